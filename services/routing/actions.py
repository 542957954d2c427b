"""Cadres' and supervisors' actions on a case (issue #5 §4). Each loads the stream, checks the action
still applies to the current state and appends with the version it read (DESIGN principle 2): when
the case moved meanwhile, it reloads and decides again, so a timer and a cadre acting at once cannot
both win. An action that no longer applies answers 409 with the reason.

Who may act (object level, after the role check of minqing.access):
- the holding unit's cadres: accept, note progress, resolve, request escalation, transfer within the
  tier, start joint handling, return as not ours; co-handling units of a joint case may note progress;
- supervisors within their township (or county-wide): chase / supervise / list, and re-dispatch a case
  (transfer to any unit), which is how a returned case gets a new holder.
"""
from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Callable

from marshmallow import Schema, fields, validate

from minqing import access
from minqing.casefile import CaseFile, fold, stream_of
from minqing.clock import Clock, isoformat
from minqing.db import read_transaction
from minqing.http import ApiError
from minqing.ledger import ConcurrencyError, Ledger, Metadata, NewEvent, RecordedEvent
from minqing.personal_data import mask_free_text
from services.routing.assignment import NoUnitError, decide_escalation, decide_transfer, joint_units_for
from services.routing.projection import load_for, policy_in_force
from services.routing.timers import LEVELS

MAX_TRIES = 10      # notify records deliveries on the case stream too, so a busy case may move often
_TEXT = [validate.Length(min=1, max=2000), validate.Regexp(r"\S", error="must not be blank")]
_CODE = validate.Length(min=1, max=100)


class ResolveIn(Schema):
    cadre = fields.String(load_default=None, validate=_CODE)   # defaults to the token's
    resolution = fields.String(required=True, validate=_TEXT)
    on_site = fields.Boolean(load_default=False)


class AcceptIn(Schema):
    note = fields.String(load_default=None, validate=validate.Length(max=2000))


class NoteIn(Schema):
    note = fields.String(required=True, validate=_TEXT)
    reply_to = fields.String(load_default=None, validate=validate.OneOf(("supervise", "listed")))


class ReasonIn(Schema):
    reason = fields.String(required=True, validate=_TEXT)


class TransferIn(Schema):
    to_unit = fields.String(required=True, validate=_CODE)
    reason = fields.String(required=True, validate=_TEXT)


class JointIn(Schema):
    co_units = fields.List(fields.String(validate=_CODE), load_default=None,
                           validate=validate.Length(min=1, max=10))
    reason = fields.String(load_default=None, validate=validate.Length(max=2000))


class SuperviseIn(Schema):
    level = fields.String(required=True, validate=validate.OneOf(LEVELS))
    note = fields.String(required=True, validate=_TEXT)
    reply_within_hours = fields.Integer(load_default=None, strict=True, validate=validate.Range(min=1, max=720))


class Conflict(ApiError):
    def __init__(self, message: str, code: str = "not_applicable"):
        super().__init__(409, code, message)


def _policy(ledger: Ledger, county: str):
    with read_transaction(ledger.engine) as conn:
        return policy_in_force(conn, county), load_for(conn, county)


def visible_case(ledger: Ledger, case_id: str, principal: access.Principal) -> tuple[CaseFile, list[RecordedEvent]]:
    """The case if this principal may see it, else 404 (nobody learns what exists outside their scope)."""
    events = ledger.read_stream(stream_of(case_id))
    if not events:
        raise access.not_found()
    case = fold(case_id, events)
    policy = _policy(ledger, case.county)[0] if principal.role == "supervisor" and case.county else None
    if not access.can_read_case(principal, case, policy):
        raise access.not_found()
    return case, events


def _holder(principal: access.Principal, case: CaseFile) -> None:
    if not access.can_act_on_case(principal, case):
        raise Conflict("your unit does not hold this case (any more)", "not_holder")


def _held(case: CaseFile, doing: str) -> None:
    if not case.is_held:
        raise Conflict(f"the case is {case.status}; only an assigned or accepted case can be {doing}")


Decide = Callable[[CaseFile, object, dict], list[tuple[str, dict]]]


def act(ledger: Ledger, clock: Clock, case_id: str, principal: access.Principal,
        decide: Decide) -> tuple[CaseFile, list[RecordedEvent]]:
    """Load, decide on the current state, append with the version read; on a conflict, again.
    Returns the case as it is after the action, and what was recorded."""
    for attempt in range(MAX_TRIES):
        case, events = visible_case(ledger, case_id, principal)
        policy, load = _policy(ledger, case.county)
        try:
            new = decide(case, policy, load)
        except (NoUnitError, KeyError) as exc:
            raise Conflict(f"the county's policy in force cannot place this case: {exc.args[0]}", "no_unit") from None
        meta = Metadata(actor=principal.actor, county=case.county, correlation_id=case_id,
                        causation_id=events[-1].event_id)
        try:
            recorded = ledger.append(stream_of(case_id), [NewEvent(t, d, meta) for t, d in new],
                                     expected_version=case.version)
        except ConcurrencyError:
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
            continue
        for event in recorded:
            case = case.apply(event)
        return case, recorded
    raise Conflict("the case kept changing while acting on it; try again", "conflict")


# ---- the actions: each returns the events to append, or raises Conflict ----------------------------

def accept(principal, command) -> Decide:
    def decide(case, policy, load):
        _holder(principal, case)
        if case.status == "accepted":
            raise Conflict(f"the case was accepted already by {case.accepted_by}", "already_accepted")
        if case.status != "assigned":
            raise Conflict(f"the case is {case.status}; only an assigned case can be accepted")
        return [("case.accepted", {"case_id": case.case_id, "cadre": principal.cadre, "unit": case.unit})]
    return decide


def note(principal, command) -> Decide:
    def decide(case, policy, load):
        co_handler = principal.role == "cadre" and principal.unit in case.joint_units and case.county == principal.county
        if not co_handler:
            _holder(principal, case)
        _held(case, "noted")
        if command["reply_to"] and case.pressure not in ("supervise", "listed"):
            raise Conflict("no supervision awaits a written reply on this case", "no_reply_owed")
        return [("case.progress_noted", {"case_id": case.case_id, "cadre": principal.cadre,
                                         "note": mask_free_text(command["note"].strip()),
                                         "reply_to": command["reply_to"]})]
    return decide


def resolve(principal, command) -> Decide:
    def decide(case, policy, load):
        if (command.get("cadre") or principal.cadre) != principal.cadre:
            raise ApiError(403, "forbidden", "a cadre resolves in their own name", {"cadre": ["not your cadre id"]})
        _holder(principal, case)
        _held(case, "resolved")
        return [("case.resolved", {"case_id": case.case_id, "cadre": principal.cadre, "unit": case.unit,
                                   "on_site": command["on_site"],
                                   "resolution": mask_free_text(command["resolution"].strip())})]
    return decide


def escalate(principal, command, clock: Clock) -> Decide:
    def decide(case, policy, load):
        _holder(principal, case)
        _held(case, "escalated")
        data = decide_escalation(policy, case, clock.now(), mask_free_text(command["reason"].strip()),
                                 automatic=False, load=load)
        if data is None:
            raise Conflict(f"tier {case.tier} is the top of this county's ladder for the case; "
                           "ask a supervisor to supervise it instead", "top_tier")
        out = [("case.escalated", data)]
        co_units = joint_units_for(policy, case, data["to_tier"])
        if co_units:
            out.append(("case.joint_handling_started", {"case_id": case.case_id, "lead_unit": data["to_unit"],
                                                        "co_units": co_units, "by": principal.actor}))
        return out
    return decide


def transfer(principal, command, clock: Clock) -> Decide:
    def decide(case, policy, load):
        supervisor = principal.role == "supervisor"
        if supervisor:
            if case.status not in ("assigned", "accepted", "returned"):
                raise Conflict(f"the case is {case.status}; only an open case can be re-dispatched")
        else:
            _holder(principal, case)
            _held(case, "transferred")
        try:
            data = decide_transfer(policy, case, command["to_unit"], clock.now(),
                                   mask_free_text(command["reason"].strip()), load, any_tier=supervisor)
        except ValueError as exc:
            raise ApiError(422, "invalid", str(exc), {"to_unit": [str(exc)]}) from None
        return [("case.transferred", data)]
    return decide


def joint(principal, command) -> Decide:
    def decide(case, policy, load):
        _holder(principal, case)
        _held(case, "handled jointly")
        if case.joint_units:
            raise Conflict(f"joint handling already runs with {', '.join(case.joint_units)}", "already_joint")
        co_units = command["co_units"] or list((policy.category(case.category) or {}).get("co_departments") or [])
        if not co_units:
            raise ApiError(422, "invalid", "name the co-handling units", {"co_units": ["required for this category"]})
        unknown = [u for u in co_units if policy.unit(u) is None or u == case.unit]
        if unknown:
            raise ApiError(422, "invalid", "unknown co-handling units", {"co_units": [f"not another unit: {u}" for u in unknown]})
        return [("case.joint_handling_started", {"case_id": case.case_id, "lead_unit": case.unit,
                                                 "co_units": sorted(set(co_units)), "by": principal.actor})]
    return decide


def return_case(principal, command) -> Decide:
    def decide(case, policy, load):
        _holder(principal, case)
        _held(case, "returned")
        return [("case.returned", {"case_id": case.case_id, "from_unit": case.unit, "cadre": principal.cadre,
                                   "reason": mask_free_text(command["reason"].strip())})]
    return decide


def supervise(principal, command, clock: Clock) -> Decide:
    def decide(case, policy, load):
        _held(case, "supervised")
        current = LEVELS.index(case.pressure) if case.pressure else -1
        if LEVELS.index(command["level"]) <= current:
            raise Conflict(f"the case is under {case.pressure} already; pressure only rises", "pressure_only_rises")
        data = {"case_id": case.case_id, "level": command["level"], "by": principal.actor,
                "note": mask_free_text(command["note"].strip())}
        hours = command["reply_within_hours"]
        if hours is not None and command["level"] == "chase":
            raise ApiError(422, "invalid_fields", "a chase (催办) asks for no written reply",
                           {"reply_within_hours": ["only for supervise or listed"]})
        if hours is None and command["level"] != "chase":
            rung = next((p for p in policy.escalation["pressure"] if p["level"] == command["level"]), None)
            hours = rung and rung.get("reply_within_hours")
        if hours:
            data["reply_due"] = isoformat(clock.now() + timedelta(hours=hours))
        return [("case.chased" if command["level"] == "chase" else "case.supervised", data)]
    return decide
