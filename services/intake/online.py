"""民生在线 (seed 000: 构建"民生在线"…让群众足不出户就能办成事): the resident's own door for the
`online` channel, `POST /api/v1/channels/online/{county}`, which the console's public report form
(`/console/online`, issue #14 §8) posts to.

Until now an `online` report entered only through `POST /api/v1/cases` with an operator's or cadre's
token (someone typing in what came in on the county's web platform). A resident has no token, so this
door is public and takes what a resident can be asked for: the category, the place (township →
village → hamlet of the published catalogue), what they ask and, optionally, a phone for the receipt,
the result and the 回访 (no name: the phone is enough to reach them; without one nobody is told and
the tracking number and PIN shown once are the only way back to the case).

- Limited per client address (ONLINE_LIMIT): the console forwards the resident's address as
  X-Forwarded-For with the gateway's proof, so one resident flooding the form is refused (429) while
  others are served.
- Idempotent per `Idempotency-Key` (the console makes one per form shown), scoped to the county and
  the channel: a double click or a reload answers the first registration — the same tracking number
  and PIN — and registers nothing more.
- Every bad field is named at once (422), the catalogue's too; the case is registered by the one
  registration path every channel takes (registration.register), recorded as `channel:online`.
"""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from minqing import access
from minqing.clock import SYSTEM_CLOCK
from minqing.db import read_transaction
from minqing.endpoints import route
from minqing.http import ApiError, json_response, read_json
from minqing.text import LineField, TextField
from services.intake import idempotency
from services.intake.projection import load_county
from services.intake.registration import new_credentials, register
from services.intake.schemas import _PHONE, NOT_BLANK, ReportOut

ONLINE_LIMIT = access.RateLimiter(rate_per_second=0.1, burst=20)     # per client address (a village office may share one)
ACTOR = "channel:online"


class OnlineReportIn(Schema):
    """What the resident's form sends; fields named as the form names them."""
    category = LineField(required=True, validate=[validate.Length(min=1, max=100), NOT_BLANK])
    township = LineField(required=True, validate=[validate.Length(min=1, max=100), NOT_BLANK])
    village = LineField(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100))
    hamlet = LineField(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100))
    summary = TextField(required=True, validate=[validate.Length(min=1, max=2000), NOT_BLANK])
    phone = LineField(load_default=None, allow_none=True, validate=validate.Length(min=7, max=20))

    def __init__(self, *args, policy=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy = policy

    @validates("phone")
    def _phone(self, value, **_):
        if value is not None and not _PHONE.match(value.strip()):
            raise ValidationError("not a mainland mobile number (11 digits starting with 1) or a landline with area code")

    @validates_schema(skip_on_field_errors=False)
    def _catalogue(self, data, **_):
        if self.policy is None:
            return
        errors = {}
        if data.get("category") and self.policy.category(data["category"]) is None:
            errors["category"] = [f"{data['category']!r} is not a category of {self.policy.doc['name']}"]
        if data.get("township"):
            try:
                self.policy.resolve_place(data["township"], data.get("village"), data.get("hamlet"))
            except KeyError as exc:
                tier = exc.args[0]
                errors[tier] = [f"{data.get(tier)!r} is not a {tier} of {self.policy.doc['name']}"]
        if errors:
            raise ValidationError(errors)


def as_report(county: str, form: dict) -> dict:
    phone = (form.get("phone") or "").strip()
    return {"county": county, "channel": "online", "category": form["category"], "kind": "help",
            "urgency": "normal", "summary": form["summary"],
            "location": {"township": form["township"], "village": form.get("village"), "hamlet": form.get("hamlet")},
            "reporter": {"name": "", "phone": phone} if phone else None}


class OnlineChannel:
    """Mixed into IntakeService (services/intake/service.py)."""

    @route("POST", "/api/v1/channels/online/<string:county>", action="public", limiter=ONLINE_LIMIT,
           body=OnlineReportIn, response=ReportOut, status=201,
           summary="民生在线: a resident's own report (category, place, summary, optional phone), no token; "
                   "limited per client address, idempotent per Idempotency-Key; answers the tracking number and PIN")
    def online_report(self, request, principal, county):
        key = idempotency.key_of(request.headers)
        with read_transaction(self.ledger.engine) as conn:
            policy = load_county(conn, county)
        if policy is None:
            raise ApiError(404, "not_found", "no such county is configured", {"county": ["unknown"]})
        form = read_json(request, OnlineReportIn(policy=policy))
        report = as_report(county, form)
        credentials = new_credentials()     # slow, and it yields: before the transaction (issue #12.2)

        def registration(conn) -> idempotency.Answer:
            registered = register(conn, self.ledger, self.vault, load_county(conn, county), report, SYSTEM_CLOCK,
                                  ACTOR, credentials=credentials)
            return idempotency.Answer(201, {
                "case_id": registered.case_id, "tracking_no": registered.tracking_no, "pin": registered.pin,
                "status": "merged" if registered.merged_into else "reported", "merged_into": registered.merged_into,
                "position": registered.position,
                "links": {"case": f"/api/v1/cases/{registered.case_id}",
                          "track": f"/api/v1/track/{registered.tracking_no}"}})

        answer = idempotency.once(self.ledger.engine, self.vault, SYSTEM_CLOCK, idempotency.scope_of(county, ACTOR),
                                  key, idempotency.fingerprint(form), registration)
        headers = {idempotency.REPLAYED: "true"} if answer.replayed else {}
        return json_response(answer.status, answer.body, headers=headers)
