"""The JSON shapes of notify's HTTP entrypoints (services/notify/service.py): queries, bodies, answers."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema


class EventsQuery(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**62))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class OutboxQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(("pending", "claimed", "sending", "sent", "failed")))


class FollowUpIn(Schema):
    rating = fields.String(required=True, validate=validate.OneOf(
        ("1", "2", "3", "satisfied", "basically_satisfied", "unsatisfied", "unreachable")),
        metadata={"description": "the reply code (1 satisfied, 2 basically satisfied, 3 unsatisfied) or the rating"})
    via = fields.String(load_default="call", validate=validate.OneOf(("call", "visit", "online", "sms")))
    solved = fields.Boolean(load_default=None, allow_none=True, truthy={True}, falsy={False},
                            metadata={"description": "the resident's answer whether the matter was actually solved "
                                                     "(解决率); optional: omitted or null when not asked"})

    @validates_schema
    def _solved_needs_an_answer(self, data, **_):
        if data.get("rating") == "unreachable" and data.get("solved") is not None:
            raise ValidationError({"solved": ["an unreachable resident gave no answer; leave it out"]})


class FollowUpOut(Schema):
    case_id = fields.String(required=True)
    rating = fields.String(required=True)
    solved = fields.Boolean(allow_none=True)
    position = fields.Integer(required=True)


class SubscriptionIn(Schema):
    url = fields.String(required=True, validate=validate.Length(min=8, max=2000))
    types = fields.List(fields.String(validate=validate.Length(min=1, max=100)), load_default=lambda: ["case.*"],
                        validate=validate.Length(min=1, max=50))
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    from_start = fields.Boolean(load_default=False, metadata={"description": "deliver the county's whole history first"})


class SubscriptionOut(Schema):
    id = fields.String(required=True)
    county = fields.String(required=True)
    url = fields.String(required=True)
    types = fields.List(fields.String(), required=True)
    description = fields.String(allow_none=True)
    status = fields.String(required=True)
    position = fields.Integer(required=True)
    delivered = fields.Integer(required=True)
    failures = fields.Integer(required=True)
    next_attempt_at = fields.String(required=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.String(required=True)
    secret = fields.String(metadata={"description": "only in the answer to the registration: keep it"})


class SubscriptionList(Schema):
    subscriptions = fields.List(fields.Nested(SubscriptionOut), required=True)
