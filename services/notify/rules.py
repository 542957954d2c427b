"""Which events notify whom, with which template (issue #6 §4) — the one place these rules live.

| event | template | to |
|---|---|---|
| case.reported | receipt (with the tracking number) | the resident |
| case.assigned, case.transferred | assignment | the cadre now holding it |
| case.deadline_warned | deadline_warning | the holding cadre |
| case.overdue | overdue | the holding cadre and their supervisor |
| case.escalated | escalation | the cadre of the new unit and the new unit's supervisor |
| case.resolved | result (统一送达) | the resident; once sent, `case.delivered` is recorded |
| case.delivered | follow_up (回访), after the county's delay | the resident (services/notify/followup.py) |

The receipt tells the PIN too: its body holds a slot the sender fills from the vault (minqing/pins.py).
A resident's messages about one case go out in the order of the events that caused them
(services/notify/ordering.py).

A supervisor is the one answering for the unit's township (`supervisor:<township>`), or the county's
(`supervisor:county`) for county-wide units. Residents' messages keep out of the county's quiet hours
unless the case is urgent. An anonymous report (意见箱) has nobody to tell.

This runs inside the projection's transaction and writes outbox rows only; sending happens later
(services/notify/outbox.py), so a redelivered event finds its rows there and adds nothing.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from minqing.casefile import CaseFile, fold
from minqing.clock import isoformat, parse_instant
from minqing.county import CountyPolicy
from minqing.db import upsert
from minqing.ledger import Ledger, RecordedEvent
from minqing.pins import PIN_SLOT
from services.notify import rating_link, settings, templates
from services.notify.quiet import defer_for_quiet
from services.notify.tables import contacts_table, followups_table, outbox_table, policies_table

log = logging.getLogger("minqing.notify")


_POLICIES: dict[tuple[str, int], CountyPolicy] = {}      # (county, version) → its parsed policy


def policy_for(conn: Connection, county: str) -> CountyPolicy | None:
    """The county's latest policy notify has seen. Only its version is read each time (notify asks
    several times per report); the document — tens of KB — only for a version not parsed yet."""
    version = conn.execute(select(policies_table.c.version).where(policies_table.c.county == county)).scalar()
    if version is None:
        return None
    policy = _POLICIES.get((county, version))
    if policy is None:
        document = conn.execute(select(policies_table.c.document).where(
            policies_table.c.county == county, policies_table.c.version == version)).scalar()
        if document is None:        # replaced by a newer version between the two reads
            return policy_for(conn, county)
        policy = _POLICIES[(county, version)] = CountyPolicy(json.loads(document), version)
    return policy


def supervisor_of(policy: CountyPolicy, unit: str | None) -> str:
    township = policy.township_of_unit(unit) if unit else None
    return f"supervisor:{township or 'county'}"


def enqueue(conn: Connection, *, key: str, county: str, case_id: str | None, template: str, recipient: str,
            recipient_masked: str, channel: str, body: str, caused_by: str, not_before: str, quiet: bool) -> bool:
    """Add one notification unless its key is already there; True when added."""
    if conn.execute(select(outbox_table.c.key).where(outbox_table.c.key == key)).first() is not None:
        return False
    conn.execute(outbox_table.insert().values(
        key=key, case_id=case_id, county=county, channel=channel, template=template, recipient_role=recipient.split(":")[0],
        recipient_ref=recipient, recipient_masked=recipient_masked, body=body, caused_by=caused_by,
        quiet=int(quiet), status="pending", attempts=0, retries=0, next_attempt_at=not_before))
    return True


def contact_of(conn: Connection, county: str, recipient: str) -> tuple[str, str]:
    """(channel, masked address) of a cadre, supervisor or board; the log channel when none is set."""
    row = conn.execute(select(contacts_table.c.channel, contacts_table.c.masked).where(
        contacts_table.c.county == county, contacts_table.c.recipient == recipient)).first()
    return (row.channel, row.masked) if row else ("log", recipient)


def compose(conn: Connection, policy: CountyPolicy, case: CaseFile, template: str, recipient: str,
            context: dict[str, Any], *, key: str, caused_by: str, at: str) -> bool:
    """Render `template` for `recipient` and put it in the outbox, due at `at` (later in quiet hours)."""
    lang = policy.notify["language"]
    body = templates.render(template, lang, context, policy.notify["templates"])
    if recipient.startswith("resident:"):
        channel, masked = "sms", context["phone_masked"]
        quiet = case.urgency != "urgent"
    else:
        channel, masked = contact_of(conn, policy.county, recipient)
        quiet = False
    due = parse_instant(at)
    if quiet:
        due = defer_for_quiet(due, policy.notify["quiet_hours"], policy.doc["timezone"])
    return enqueue(conn, key=key, county=policy.county, case_id=case.case_id, template=template, recipient=recipient,
                   recipient_masked=masked, channel=channel, body=body, caused_by=caused_by,
                   not_before=isoformat(due), quiet=quiet)


def rate_url(policy: CountyPolicy, case_id: str, history) -> str:
    """The signed link to rate the case's latest result on the console (rating_link.py); '' when off."""
    link = settings.rating_link()
    return rating_link.url_for(link.secret, link.public_url, case_id, history, policy.notify["follow_up"])


def case_context(policy: CountyPolicy, case: CaseFile, phone_masked: str | None = None) -> dict[str, Any]:
    """What every case message may say: the county, tracking number, category and place names."""
    category = policy.category(case.category or "") or {}
    loc = case.location or {}
    place = loc.get("hamlet") or loc.get("village") or loc.get("township")
    return {"county_name": policy.doc["name"], "tracking_no": case.tracking_no,
            "category_name": category.get("name", case.category), "place_name": policy.place_name(place) or place,
            "phone_masked": phone_masked or "", "language": policy.notify["language"]}


class NotificationRules:
    name = "notify.rules"
    event_types = frozenset({"policy.published", "case.reported", "case.assigned", "case.transferred",
                             "case.escalated", "case.deadline_warned", "case.overdue", "case.resolved",
                             "case.delivered", "case.followed_up", "case.reopened"})

    def __init__(self, ledger: Ledger, config=None):
        self.ledger = ledger

    # ---- helpers -----------------------------------------------------------------------------------

    def _unit_name(self, policy: CountyPolicy, code: str | None) -> str:
        unit = policy.unit(code) if code else None
        return unit["name"] if unit else (code or "")

    def _cadre_name(self, policy: CountyPolicy, cadre_id: str | None) -> str:
        cadre = policy.cadre(cadre_id) if cadre_id else None
        return cadre["name"] if cadre else (cadre_id or "")

    def _when(self, policy: CountyPolicy, instant: str | None) -> str:
        return templates.local_time(instant, policy.doc["timezone"], policy.notify["language"]) if instant else ""

    def _send(self, conn: Connection, event: RecordedEvent, policy: CountyPolicy, case: CaseFile, template: str,
              recipient: str, context: dict[str, Any]) -> None:
        compose(conn, policy, case, template, recipient, context, key=f"{event.event_id}:{template}:{recipient}",
                caused_by=event.event_id, at=event.recorded_at)

    # ---- the projection ----------------------------------------------------------------------------

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        d = event.data
        if event.type == "policy.published":
            upsert(conn, policies_table, {"county": d["county"]},
                   {"version": d["version"], "document": json.dumps(d["policy"], ensure_ascii=False, sort_keys=True)})
            return
        policy = policy_for(conn, event.county)
        if policy is None:
            log.warning("no policy of %s is known to notify; %s at %d notifies nobody", event.county, event.type,
                        event.position)
            return
        if event.type == "case.followed_up":
            conn.execute(update(followups_table).where(followups_table.c.case_id == d["case_id"],
                                                       followups_table.c.status.in_(("scheduled", "asked")))
                         .values(status="unreachable" if d["rating"] == "unreachable" else "answered"))
            return
        if event.type == "case.reopened":
            conn.execute(update(followups_table).where(followups_table.c.case_id == d["case_id"],
                                                       followups_table.c.status.in_(("scheduled", "asked")))
                         .values(status="cancelled"))
            return
        history = self.ledger.read_stream(event.stream, conn=conn)
        case = fold(d["case_id"], history)
        resident = f"resident:{case.reporter_subject}" if case.reporter_subject else None
        ctx = case_context(policy, case, history[0].data["reporter"]["phone_masked"] if resident else None)

        if event.type == "case.reported" and resident:
            self._send(conn, event, policy, case, "receipt", resident, {**ctx, "pin": PIN_SLOT})
        elif event.type in ("case.assigned", "case.transferred"):
            cadre = d.get("cadre") or d["to_cadre"]
            unit = d.get("unit") or d["to_unit"]
            self._send(conn, event, policy, case, "assignment", f"cadre:{cadre}",
                       {**ctx, "unit_name": self._unit_name(policy, unit),
                        "response_due": self._when(policy, d.get("response_due")) or "—",
                        "resolution_due": self._when(policy, d["resolution_due"])})
        elif event.type == "case.deadline_warned":
            self._send(conn, event, policy, case, "deadline_warning", f"cadre:{d['holder_cadre']}",
                       {**ctx, "deadline": d["deadline"], "due": self._when(policy, d["due"])})
        elif event.type == "case.overdue":
            more = {**ctx, "deadline": d["deadline"], "due": self._when(policy, d["due"]),
                    "unit_name": self._unit_name(policy, d["holder_unit"]),
                    "cadre_name": self._cadre_name(policy, d["holder_cadre"])}
            for recipient in (f"cadre:{d['holder_cadre']}", supervisor_of(policy, d["holder_unit"])):
                self._send(conn, event, policy, case, "overdue", recipient, more)
        elif event.type == "case.escalated":
            more = {**ctx, "from_unit_name": self._unit_name(policy, d["from_unit"]),
                    "to_unit_name": self._unit_name(policy, d["to_unit"]), "automatic": d["automatic"],
                    "reason": d["reason"], "resolution_due": self._when(policy, d["resolution_due"])}
            for recipient in (f"cadre:{d['to_cadre']}", supervisor_of(policy, d["to_unit"])):
                self._send(conn, event, policy, case, "escalation", recipient, more)
        elif event.type == "case.resolved" and resident:
            self._send(conn, event, policy, case, "result", resident,
                       {**ctx, "resolution": d["resolution"], "rate_url": rate_url(policy, case.case_id, history)})
        elif event.type == "case.delivered" and resident:
            due = parse_instant(event.recorded_at) + timedelta(minutes=policy.notify["follow_up"]["after_minutes"])
            exists = select(followups_table.c.id).where(followups_table.c.id == event.event_id)
            if conn.execute(exists).first() is None:
                conn.execute(followups_table.insert().values(
                    id=event.event_id, case_id=case.case_id, county=event.county, subject=case.reporter_subject,
                    status="scheduled", asks=0, next_due=isoformat(due), asked_at=None))

    @staticmethod
    def drop(conn: Connection) -> None:
        raise RuntimeError("notify.rules cannot be rebuilt: replaying it would send every notification again")
