"""A case's current state, folded from its stream (DESIGN principle 1: decisions load the stream).

Pure: no database, no clock. Routing decides on it, intake shows it; both fold the same events.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Iterable

from minqing.ledger import RecordedEvent

OPEN_STATUSES = ("reported", "assigned", "accepted", "reopened", "returned")
HELD_STATUSES = ("assigned", "accepted")      # a unit holds the case and its deadlines run

# What each event does to the status; events not listed leave it as it is.
_STATUS_AFTER = {
    "case.reported": "reported",
    "case.assigned": "assigned",
    "case.transferred": "assigned",
    "case.escalated": "assigned",
    "case.accepted": "accepted",
    "case.resolved": "resolved",
    "case.delivered": "delivered",
    "case.followed_up": "followed_up",
    "case.reopened": "reopened",
    "case.returned": "returned",
    "case.closed": "closed",
    "case.withdrawn": "withdrawn",
    "case.merged": "merged",
}


# What each step records for people to read (issue #18.4): who did it is the event's actor; these are
# the data fields that say what was done. Texts were masked at entry (personal_data.mask_free_text);
# events carry no personal data, so nothing here needs more.
SHOWN_FIELDS = {
    "case.reported": ("channel", "kind", "urgency"),
    "case.assigned": ("tier", "unit", "cadre", "rule", "response_due", "resolution_due"),
    "case.accepted": ("unit", "cadre"),
    "case.progress_noted": ("cadre", "note", "reply_to"),
    "case.transferred": ("from_unit", "to_unit", "to_cadre", "reason", "resolution_due"),
    "case.escalated": ("from_unit", "to_unit", "to_cadre", "automatic", "reason", "resolution_due"),
    "case.returned": ("from_unit", "cadre", "reason"),
    "case.joint_handling_started": ("lead_unit", "co_units"),
    "case.chased": ("level", "by", "note", "reply_due"),
    "case.supervised": ("level", "by", "note", "reply_due"),
    "case.deadline_warned": ("deadline", "due"),
    "case.overdue": ("deadline", "due"),
    "case.resolved": ("unit", "cadre", "on_site", "resolution"),
    "case.delivered": ("channel",),
    "case.followed_up": ("rating", "via", "asks", "by"),
    "case.reopened": ("reason",),
    "case.closed": ("reason",),
    "case.withdrawn": ("reason",),
    "case.merged": ("into_case_id", "reason"),
    "case.urgency_raised": ("urgency", "reports"),
}


def step_of(event: RecordedEvent) -> dict:
    """One history entry: where and when (UTC, as stored), who, and what was done."""
    shown = SHOWN_FIELDS.get(event.type, ())
    return {"position": event.position, "version": event.version, "type": event.type, "at": event.recorded_at,
            "by": event.metadata.actor, "what": {k: event.data[k] for k in shown if event.data.get(k) is not None}}


# A new holder starts clean: no acceptance, no pressure, no co-handlers of the previous holding.
_NEW_HOLDING = {"accepted_by": None, "pressure": None, "reply_due": None, "joint_units": ()}


@dataclass(frozen=True)
class CaseFile:
    case_id: str
    version: int = 0
    status: str = "none"
    county: str | None = None
    tracking_no: str | None = None
    category: str | None = None
    channel: str | None = None
    kind: str | None = None
    urgency: str | None = None
    summary: str | None = None
    location: dict | None = None
    reported_at: str | None = None
    registered_at: str | None = None
    tier: str | None = None
    unit: str | None = None
    cadre: str | None = None
    response_due: str | None = None
    resolution_due: str | None = None
    policy_version: int | None = None
    resolved_by: str | None = None
    units_seen: tuple[str, ...] = ()        # every unit that has held the case, in order
    rating: str | None = None
    first_contact: str | None = None
    accepted_by: str | None = None
    joint_units: tuple[str, ...] = ()       # co-handlers while joint handling (会诊) runs; the holder leads
    pressure: str | None = None             # the highest of chase / supervise / listed on this holding
    reply_due: str | None = None            # a written reply to supervision is owed by then
    deadline_marks: frozenset = frozenset() # (event type, deadline, due) already recorded: each once
    returned_by: str | None = None
    reopened: int = 0
    merged_into: str | None = None
    reports: int = 1                        # how many reports of this matter (duplicates merged into it)
    reporter_subject: str | None = None     # the resident's vault subject; None when anonymous
    history: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_held(self) -> bool:
        return self.status in HELD_STATUSES

    def marked(self, kind: str, deadline: str, due: str | None) -> bool:
        return (kind, deadline, due) in self.deadline_marks

    def _seen(self, unit: str) -> tuple[str, ...]:
        return self.units_seen if unit in self.units_seen else self.units_seen + (unit,)

    def apply(self, event: RecordedEvent) -> "CaseFile":
        changes = self._changes(event)
        changes["history"] = self.history + (step_of(event),)
        return self._with(changes)

    def _changes(self, event: RecordedEvent) -> dict:
        """What `event` changes in the case, but its history step: the one place for the folding rules."""
        d = event.data
        changes: dict = {"version": event.version, "status": _STATUS_AFTER.get(event.type, self.status)}
        if event.type == "case.reported":
            changes.update(county=d["county"], tracking_no=d["tracking_no"], category=d["category"],
                           channel=d["channel"], kind=d["kind"], urgency=d["urgency"], summary=d["summary"],
                           location=d["location"], reported_at=d["reported_at"], registered_at=event.recorded_at,
                           reporter_subject=(d.get("reporter") or {}).get("subject"))
        elif event.type == "case.assigned":
            changes.update(tier=d["tier"], unit=d["unit"], cadre=d["cadre"], response_due=d["response_due"],
                           resolution_due=d["resolution_due"], policy_version=d["policy_version"],
                           units_seen=self._seen(d["unit"]), first_contact=self.first_contact or d.get("first_contact"),
                           **_NEW_HOLDING)
        elif event.type in ("case.transferred", "case.escalated"):
            holding = dict(_NEW_HOLDING)
            if event.type == "case.transferred" and self.status != "returned":
                holding.update(pressure=self.pressure, reply_due=self.reply_due)   # pressure follows a sideways move
            changes.update(unit=d["to_unit"], cadre=d["to_cadre"], resolution_due=d["resolution_due"],
                           response_due=d.get("response_due"), policy_version=d["policy_version"],
                           units_seen=self._seen(d["to_unit"]), **holding)
            if d.get("to_tier"):
                changes["tier"] = d["to_tier"]
        elif event.type == "case.accepted":
            changes.update(accepted_by=d["cadre"], cadre=d["cadre"])
        elif event.type == "case.joint_handling_started":
            seen = self.units_seen
            for unit in d["co_units"]:
                seen = seen if unit in seen else seen + (unit,)
            changes.update(joint_units=tuple(d["co_units"]), units_seen=seen)
        elif event.type in ("case.chased", "case.supervised"):
            changes.update(pressure=d["level"], reply_due=d.get("reply_due") or self.reply_due)
        elif event.type == "case.progress_noted" and d.get("reply_to"):
            changes["reply_due"] = None
        elif event.type in ("case.deadline_warned", "case.overdue"):
            changes["deadline_marks"] = self.deadline_marks | {(event.type, d["deadline"], d["due"])}
        elif event.type == "case.returned":
            changes.update(returned_by=d["from_unit"], unit=None, cadre=None, response_due=None,
                           resolution_due=None, **_NEW_HOLDING)
        elif event.type == "case.resolved":
            changes.update(resolved_by=d["cadre"], reply_due=None)
        elif event.type == "case.followed_up":
            changes["rating"] = d["rating"]
        elif event.type == "case.merged":
            changes["merged_into"] = d["into_case_id"]
        elif event.type == "case.urgency_raised":
            changes.update(urgency=d["urgency"], reports=d["reports"])
        elif event.type == "case.reopened":
            changes.update(reopened=self.reopened + 1, rating=None, resolved_by=None)
        elif event.type not in _STATUS_AFTER:
            changes["status"] = self.status
        return changes

    def _with(self, changes: dict) -> "CaseFile":
        """dataclasses.replace without its cost (it calls __init__ with every field again): a fold of a
        due case's stream ran it once per event, the biggest single cost of a timer sweep (issue #16).
        Only known field names may change (replace checked that; so does this)."""
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(f"CaseFile has no fields {sorted(unknown)}")
        new = object.__new__(CaseFile)
        state = new.__dict__
        state.update(self.__dict__)
        state.update(changes)
        return new


_FIELDS = frozenset(f.name for f in fields(CaseFile))
_BLANK = {f.name: f.default if f.default is not MISSING else f.default_factory()
          for f in fields(CaseFile) if f.name != "case_id"}


def fold(case_id: str, events: Iterable[RecordedEvent], *, history: bool = True) -> CaseFile:
    """The case after `events`: the same CaseFile as applying them one by one (CaseFile.apply), built
    as one object updated in place (nobody else sees it before it is returned), which costs a third
    of a new frozen object per event (issue #16).

    `history=False` leaves `history` empty: for deciders that never show the steps (routing's timer
    sweep), where building them was another third of the fold; every other field is the same."""
    state = object.__new__(CaseFile)
    own = state.__dict__
    own.update(_BLANK)
    own["case_id"] = case_id
    for event in events:
        changes = state._changes(event)
        if history:
            changes["history"] = own["history"] + (step_of(event),)
        own.update(changes)
    return state


def stream_of(case_id: str) -> str:
    return f"case-{case_id}"
