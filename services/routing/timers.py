"""Routing's timers (限时办结, 催办 → 督办 → 挂牌督办): what is pending for a case, and what a timer
that fell due appends. The one place for the timer rules; the county's `escalation` section sets
the numbers.

- A warning `warn_before_hours` before the response and the resolution deadline (case.deadline_warned).
- At the response deadline of a case nobody accepted: case.overdue (response).
- At the resolution deadline of a held case: case.overdue (resolution), charged to the holder; then,
  where the policy says `escalate` and a tier above can take the case, case.escalated to it (with a
  fresh deadline counted from now, when the new unit receives it); otherwise graded pressure.
- Pressure rises chase → supervise → listed at `after_hours` past the lapsed deadline, and a level
  that asks for a written reply (`reply_within_hours`) rises to the next one when no reply came in time.

Pure: it decides from the folded case and the policy; the sweep appends what it returns with the
case version it read, so a cadre acting at the same moment and the timer cannot both win.
"""
from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from minqing.casefile import CaseFile
from minqing.clock import isoformat, parse_instant
from minqing.county import CountyPolicy
from services.routing.assignment import decide_escalation, joint_units_for

ACTOR = "service:routing"
LEVELS = ("chase", "supervise", "listed")
_NS = uuid.UUID("0b8d5c36-95a4-4f57-9a1e-3c1f6f2b8e41")
_NS_BYTES = _NS.bytes


@dataclass(frozen=True)
class Timer:
    kind: str          # response_warn | response_overdue | resolution_warn | resolution_overdue | pressure
    due_at: datetime


@dataclass(frozen=True)
class Step:
    """One event a fired timer appends: type, data, and an id derived from what caused it."""
    type: str
    data: dict
    event_id: str


def _step(type_: str, data: dict, *key) -> Step:
    return Step(type_, data, step_id(":".join([type_, data["case_id"], *map(str, key)])))


def step_id(name: str) -> str:
    """str(uuid.uuid5(_NS, name)) without building a UUID object (RFC 4122 §4.3: SHA-1 of the
    namespace and the name, version 5, RFC variant), a tenth of a sweep's deciding (issue #16)."""
    digest = bytearray(hashlib.sha1(_NS_BYTES + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


# Deadlines repeat across cases (the same end of a working day), and a sweep reads each several
# times; datetimes are immutable, so parsing each text once is safe.
_instant = functools.lru_cache(maxsize=4096)(parse_instant)


def overdue_action(policy: CountyPolicy, case: CaseFile) -> str:
    category = policy.category(case.category) or {}
    return category.get("on_resolution_overdue") or policy.escalation["on_resolution_overdue"]


def _next_pressure(policy: CountyPolicy, case: CaseFile) -> tuple[dict, datetime] | None:
    """The next rung of pressure and when it falls due, once the resolution deadline has lapsed."""
    if not case.marked("case.overdue", "resolution", case.resolution_due):
        return None
    ladder = policy.escalation["pressure"]
    current = LEVELS.index(case.pressure) if case.pressure else -1
    above = [p for p in ladder if LEVELS.index(p["level"]) > current]
    if not above:
        return None
    step = above[0]
    at = _instant(case.resolution_due) + timedelta(hours=step["after_hours"])
    if case.reply_due:
        at = min(at, _instant(case.reply_due))
    return step, at


def pending(policy: CountyPolicy, case: CaseFile) -> list[Timer]:
    """Every timer the case has pending now."""
    return [Timer(kind, due_at) for kind, due_at in _pending(policy, case)]


def _pending(policy: CountyPolicy, case: CaseFile) -> list[tuple[str, datetime]]:
    """pending's (kind, due_at) pairs; fire reads them without building Timer objects (issue #16)."""
    if not case.is_held:
        return []
    warn = policy.escalation["warn_before_hours"]
    timers = []
    if case.status == "assigned" and case.response_due:
        due = _instant(case.response_due)
        if not case.marked("case.overdue", "response", case.response_due):
            if warn["response"] and not case.marked("case.deadline_warned", "response", case.response_due):
                timers.append(("response_warn", due - timedelta(hours=warn["response"])))
            timers.append(("response_overdue", due))
    if case.resolution_due:
        due = _instant(case.resolution_due)
        if not case.marked("case.overdue", "resolution", case.resolution_due):
            if warn["resolution"] and not case.marked("case.deadline_warned", "resolution", case.resolution_due):
                timers.append(("resolution_warn", due - timedelta(hours=warn["resolution"])))
            timers.append(("resolution_overdue", due))
    nxt = _next_pressure(policy, case)
    if nxt is not None:
        timers.append(("pressure", nxt[1]))
    return timers


def _deadline_data(case: CaseFile, deadline: str, due: str) -> dict:
    return {"case_id": case.case_id, "deadline": deadline, "due": due,
            "holder_unit": case.unit, "holder_cadre": case.cadre}


def fire(policy: CountyPolicy, case: CaseFile, now: datetime, load=None) -> list[Step]:
    """The events for every timer of `case` due at `now` (at most one rung of pressure per sweep).
    `load` (open cases per cadre, for choosing an escalation's duty cadre) may be a function, called
    only when an escalation is decided."""
    steps: list[Step] = []
    due = {kind for kind, due_at in _pending(policy, case) if due_at <= now}
    for deadline in ("response", "resolution"):
        when = case.response_due if deadline == "response" else case.resolution_due
        if f"{deadline}_warn" in due and f"{deadline}_overdue" not in due:
            steps.append(_step("case.deadline_warned", _deadline_data(case, deadline, when), deadline, when))
        if f"{deadline}_overdue" in due:
            steps.append(_step("case.overdue", _deadline_data(case, deadline, when), deadline, when))
    if "resolution_overdue" in due and overdue_action(policy, case) == "escalate":
        try:
            escalation = decide_escalation(policy, case, now, f"the resolution deadline {case.resolution_due} lapsed "
                                           f"at tier {case.tier} (限时办结)", automatic=True,
                                           load=load() if callable(load) else load)
        except LookupError:      # the policy in force cannot place it above: the lapse stands, pressure follows
            escalation = None
        if escalation is not None:
            steps.append(_step("case.escalated", escalation, case.tier, case.resolution_due))
            co_units = joint_units_for(policy, case, escalation["to_tier"])
            if co_units:
                steps.append(_step("case.joint_handling_started", {
                    "case_id": case.case_id, "lead_unit": escalation["to_unit"], "co_units": co_units,
                    "by": ACTOR}, escalation["to_tier"], case.resolution_due))
            return steps
    if "pressure" in due or "resolution_overdue" in due:
        steps.extend(_pressure(policy, case, now, overdue_now="resolution_overdue" in due))
    return steps


def _pressure(policy: CountyPolicy, case: CaseFile, now: datetime, overdue_now: bool) -> list[Step]:
    if overdue_now:      # the lapse is being recorded in this very sweep
        case = replace(case, deadline_marks=case.deadline_marks | {("case.overdue", "resolution", case.resolution_due)})
    nxt = _next_pressure(policy, case)
    if nxt is None or nxt[1] > now:
        return []
    rung, _ = nxt
    missed_reply = case.reply_due is not None and _instant(case.reply_due) <= now
    note = (f"no written reply by {case.reply_due}; pressure rises to {rung['level']}" if missed_reply else
            f"{rung['after_hours']} hours past the resolution deadline {case.resolution_due}")
    data = {"case_id": case.case_id, "level": rung["level"], "by": ACTOR, "note": note}
    if rung.get("reply_within_hours"):
        data["reply_due"] = isoformat(now + timedelta(hours=rung["reply_within_hours"]))
    type_ = "case.chased" if rung["level"] == "chase" else "case.supervised"
    return [_step(type_, data, rung["level"], case.unit, case.resolution_due)]
