"""The resident's rating through the signed link (issue #14 §8): the two public routes the console's
page `/console/rate/<token>` calls. The token is the proof (services/notify/rating_link.py); the
answer is recorded by the very call an SMS reply makes (followup.record_follow_up: one
`case.followed_up`, `via: online`, `solved` and the rating), so assessment's 解决率 and 满意率 count it
the same way and routing reopens an unsatisfied case as it does after an SMS.

- `GET /api/v1/rate/{token}`: the result in plain words and the link's state:
  `awaiting` (may be answered), `answered` (with the answer recorded, whichever way it came),
  `closed` (no longer waiting: reopened, rated unreachable, or a newer result was sent).
- `POST /api/v1/rate/{token}` `{solved, rating}`: 201 with the answer; 409 `already_answered` (with
  the answer on record) or `not_awaiting`.
- A malformed, tampered or foreign token — or links switched off — is 404; an expired one 410.
Nothing personal is shown: the tracking number, category, place, the cadre's resolution text (the
message the resident was sent) and times.
"""
from __future__ import annotations

from marshmallow import Schema, fields, validate
from sqlalchemy import select

from minqing import access
from minqing.casefile import fold, stream_of
from minqing.clock import SYSTEM_CLOCK
from minqing.db import read_transaction
from minqing.endpoints import route
from minqing.http import ApiError, json_response, read_json
from minqing.localtime import plain
from services.notify import followup, rating_link, settings
from services.notify.rules import policy_for
from services.notify.tables import followups_table

RATE_LIMIT = access.RateLimiter(rate_per_second=2.0, burst=20)       # per client address (the resident)
ANSWERS = ("satisfied", "basically_satisfied", "unsatisfied")
VIA = "online"
ACTOR = "channel:rating_link"


class RateIn(Schema):
    solved = fields.Boolean(required=True, truthy={True}, falsy={False},
                            metadata={"description": "was the matter actually solved (解决率)"})
    rating = fields.String(required=True, validate=validate.OneOf(ANSWERS),
                           metadata={"description": "how satisfied the resident is (满意率)"})


class _Answer(Schema):
    rating = fields.String(required=True)
    solved = fields.Boolean(required=True, allow_none=True)
    via = fields.String(required=True)
    at = fields.String(required=True)


class RateOut(Schema):
    case_id = fields.String(required=True)
    tracking_no = fields.String(required=True)
    category_name = fields.String(required=True, allow_none=True)
    place_name = fields.String(required=True, allow_none=True)
    resolution = fields.String(required=True, allow_none=True)
    resolved_at = fields.String(required=True, metadata={"description": "local time in plain words"})
    expires_at = fields.String(required=True, metadata={"description": "local time in plain words"})
    state = fields.String(required=True, validate=validate.OneOf(("awaiting", "answered", "closed")))
    answer = fields.Nested(_Answer, required=True, allow_none=True)


def _link(token: str) -> rating_link.Link:
    secret = settings.rating_link().secret
    try:
        if not secret:
            raise rating_link.LinkRefused("forged")
        return rating_link.verify(secret, token, SYSTEM_CLOCK.now())
    except rating_link.LinkRefused as refused:
        if refused.reason == "expired":
            raise ApiError(410, "expired", "this rating link has expired", {"token": ["expired"]}) from None
        raise ApiError(404, "not_found", "no such rating link", {"token": ["unknown"]}) from None


def _state(link: rating_link.Link, history, case) -> tuple[str, dict | None]:
    """Where the result the link rates stands: answered (and how), awaiting, or closed."""
    after = [e for e in history if e.position > link.resolved_position]
    answered = next((e for e in after if e.type == "case.followed_up"), None)
    if answered is not None and answered.data["rating"] != "unreachable":
        return "answered", answered
    resolved = [e for e in history if e.type == "case.resolved"]
    latest = resolved[-1].position if resolved else None
    if answered is None and latest == link.resolved_position and case.status in followup.AWAITING:
        return "awaiting", None
    return "closed", None


class RatingRoutes:
    """Mixed into NotifyService (services/notify/service.py)."""

    def _rating_view(self, token: str, lang: str) -> tuple[dict, rating_link.Link, str]:
        link = _link(token)
        history = self.ledger.read_stream(stream_of(link.case_id))
        case = fold(link.case_id, history)
        resolved = next((e for e in history if e.position == link.resolved_position and e.type == "case.resolved"),
                        None)
        if resolved is None:
            raise ApiError(404, "not_found", "no such rating link", {"token": ["unknown"]})
        with read_transaction(self.ledger.engine) as conn:
            policy = policy_for(conn, case.county)
        if policy is None:
            raise ApiError(404, "not_found", "no such rating link", {"token": ["unknown"]})
        state, answer = _state(link, history, case)
        category = policy.category(case.category or "") or {}
        loc = case.location or {}
        place = loc.get("hamlet") or loc.get("village") or loc.get("township")
        zone = policy.doc["timezone"]
        view = {
            "case_id": case.case_id, "tracking_no": case.tracking_no,
            "category_name": category.get("name", case.category), "place_name": policy.place_name(place) or place,
            "resolution": resolved.data.get("resolution"), "resolved_at": plain(resolved.recorded_at, zone, lang),
            "expires_at": plain(link.expires, zone, lang), "state": state,
            "answer": None if answer is None else {"rating": answer.data["rating"], "solved": answer.data.get("solved"),
                                                   "via": answer.data["via"],
                                                   "at": plain(answer.recorded_at, zone, lang)},
        }
        return view, link, case.county

    @route("GET", "/api/v1/rate/<string:token>", action="public", limiter=RATE_LIMIT, response=RateOut,
           errors=(410,), summary="The result a signed rating link (sent with the result) rates, and whether it "
                                  "may still be answered (?lang=en)")
    def rating_view(self, request, principal, token):
        view, _, _ = self._rating_view(token, "en" if request.args.get("lang") == "en" else "zh")
        return json_response(200, view)

    @route("POST", "/api/v1/rate/<string:token>", action="public", limiter=RATE_LIMIT, body=RateIn,
           response=RateOut, status=201, errors=(409, 410),
           summary="回访 through the signed rating link: was it solved, how satisfied — recorded as an SMS reply "
                   "is (case.followed_up, via online); a second answer is 409")
    def rating_answer(self, request, principal, token):
        lang = "en" if request.args.get("lang") == "en" else "zh"
        view, link, county = self._rating_view(token, lang)     # the link first: a forged one learns nothing
        given = read_json(request, RateIn())
        if view["state"] != "awaiting":
            code = "already_answered" if view["state"] == "answered" else "not_awaiting"
            raise ApiError(409, code, "this result has already been rated" if view["state"] == "answered"
                           else "this result is no longer waiting for a rating", {"token": [view["state"]]})
        with read_transaction(self.ledger.engine) as conn:
            asks = conn.execute(select(followups_table.c.asks).where(
                followups_table.c.case_id == link.case_id,
                followups_table.c.status.in_(("scheduled", "asked")))).scalar()
        try:
            followup.record_follow_up(self.ledger, link.case_id, given["rating"], VIA, actor=ACTOR, county=county,
                                      asks=asks, solved=given["solved"], resolved_position=link.resolved_position)
        except followup.NotAwaiting:
            again, _, _ = self._rating_view(token, lang)
            raise ApiError(409, "already_answered" if again["state"] == "answered" else "not_awaiting",
                           "this result is no longer waiting for a rating", {"token": [again["state"]]}) from None
        view, _, _ = self._rating_view(token, lang)
        return json_response(201, view)
