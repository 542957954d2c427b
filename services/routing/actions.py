"""Cadre actions on a case. Each loads the stream, checks the action still applies to the current
state and appends with the version it read (DESIGN principle 2): when the case moved meanwhile, it
reloads and decides again, so a timer and a cadre acting at once cannot both win."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from minqing import access
from minqing.casefile import fold, stream_of
from minqing.http import ApiError
from minqing.ledger import ConcurrencyError, Ledger, Metadata, NewEvent, RecordedEvent
from minqing.personal_data import mask_free_text

MAX_TRIES = 5


class ResolveIn(Schema):
    cadre = fields.String(load_default=None, validate=validate.Length(min=1, max=100))   # defaults to the token's
    resolution = fields.String(required=True, validate=[validate.Length(min=1, max=2000),
                                                        validate.Regexp(r"\S", error="must not be blank")])
    on_site = fields.Boolean(load_default=False)


def resolve(ledger: Ledger, case_id: str, command: dict, principal: access.Principal) -> RecordedEvent:
    stream = stream_of(case_id)
    cadre = command.get("cadre") or principal.cadre
    if cadre != principal.cadre:
        raise ApiError(403, "forbidden", "a cadre resolves in their own name", {"cadre": ["not your cadre id"]})
    for _ in range(MAX_TRIES):
        events = ledger.read_stream(stream)
        if not events:
            raise access.not_found()
        case = fold(case_id, events)
        if not access.can_read_case(principal, case, None):
            raise access.not_found()
        if not access.can_act_on_case(principal, case):
            raise ApiError(409, "not_holder", "your unit no longer holds this case")
        if case.status not in ("assigned", "accepted"):
            raise ApiError(409, "not_applicable",
                           f"the case is {case.status}; only an assigned or accepted case can be resolved")
        data = {"case_id": case_id, "cadre": principal.cadre, "unit": case.unit, "on_site": command["on_site"],
                "resolution": mask_free_text(command["resolution"].strip())}
        meta = Metadata(actor=principal.actor, county=case.county, correlation_id=case_id)
        try:
            return ledger.append(stream, [NewEvent("case.resolved", data, meta)], expected_version=case.version)[0]
        except ConcurrencyError:
            continue
    raise ApiError(409, "conflict", "the case kept changing while resolving it; try again")
