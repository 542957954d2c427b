"""The event contract (DESIGN §5, a promise to subscribers): every event type, its schema version,
its marshmallow schema, and the upcasters that lift old versions on read.

The ledger validates every event against this module before appending it, so nothing outside the
contract — and no raw personal data — can enter the history.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from marshmallow import Schema, ValidationError, fields, validate

from minqing import contract_fast
from minqing.personal_data import find_raw_personal_data
from minqing.text import text_problem

CHANNELS = (
    "hotline",            # 24-hour hotline
    "leader_phone",       # a leader's published phone
    "service_hall",       # 群众之家 walk-in
    "field_visit",        # 民情下访
    "market_post",        # 便民服务岗 on market day
    "suggestion_box",     # 意见箱
    "online",             # 民生在线
    "wechat",
    "proxy_agent",        # 代办员 on a resident's behalf
    "open311",
)
KINDS = ("complaint", "inquiry", "help", "suggestion", "dispute", "administrative_service")
TIERS = ("hamlet", "village", "township", "department", "county")   # glossary levels; a county's tiers sit on them
_TIER = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", error="must be a tier code of the county's policy")
RATINGS = ("satisfied", "basically_satisfied", "unsatisfied", "unreachable")

_ID = validate.Length(min=1, max=100)
_TEXT = validate.Length(min=1, max=4000)


class ContractViolation(ValueError):
    """An event that does not match the contract; `errors` maps field paths to messages."""

    def __init__(self, event_type: str, errors: Mapping[str, Any]):
        self.event_type = event_type
        self.errors = dict(errors)
        super().__init__(f"{event_type}: {self.errors}")


class _Strict(Schema):
    class Meta:
        ordered = True


class Instant(fields.String):
    """An ISO-8601 instant in UTC with a trailing Z, the one form minqing.clock.isoformat writes."""

    def _validate(self, value):
        super()._validate(value)
        from minqing.clock import parse_instant
        try:
            parse_instant(value)
        except (ValueError, TypeError):
            raise ValidationError("not an ISO-8601 instant with a timezone")


class Location(_Strict):
    township = fields.String(required=True, validate=_ID)
    village = fields.String(load_default=None, allow_none=True, validate=_ID)
    hamlet = fields.String(load_default=None, allow_none=True, validate=_ID)


class ReporterRef(_Strict):
    subject = fields.String(required=True, allow_none=True, validate=_ID)   # vault subject; None: anonymous
    name_masked = fields.String(required=True, validate=validate.Length(max=50))
    phone_masked = fields.String(required=True, validate=validate.Length(max=20))


class CaseEvent(_Strict):
    case_id = fields.String(required=True, validate=_ID)


class Coordinates(_Strict):
    lat = fields.Float(required=True, validate=validate.Range(min=-90, max=90))
    lon = fields.Float(required=True, validate=validate.Range(min=-180, max=180))


class Attachment(_Strict):
    ref = fields.String(required=True, validate=validate.Length(min=1, max=500))   # where the file is kept
    media_type = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))


class CaseReported(CaseEvent):
    county = fields.String(required=True, validate=_ID)
    tracking_no = fields.String(required=True, validate=_ID)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    category = fields.String(required=True, validate=_ID)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    urgency = fields.String(required=True, validate=validate.OneOf(("normal", "urgent")))
    summary = fields.String(required=True, validate=_TEXT)
    location = fields.Nested(Location, required=True)
    reporter = fields.Nested(ReporterRef, required=True)
    reported_at = Instant(required=True)   # when the resident raised it (may precede registration)
    # optional (added without a new version; absent in older events)
    details = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=8000))
    address = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=300))
    coordinates = fields.Nested(Coordinates, load_default=None, allow_none=True)
    attachments = fields.List(fields.Nested(Attachment), load_default=list, validate=validate.Length(max=20))
    paper_form_ref = fields.String(load_default=None, allow_none=True, validate=_ID)   # 纸质登记表 of an offline report
    agent = fields.String(load_default=None, allow_none=True, validate=_ID)   # the 代办员 who reported on the resident's behalf
    external_ref = fields.String(load_default=None, allow_none=True, validate=_ID)   # e.g. the WeChat message id


class CaseMerged(CaseEvent):
    into_case_id = fields.String(required=True, validate=_ID)
    reason = fields.String(required=True, validate=_TEXT)


class CaseUrgencyRaised(CaseEvent):
    """Repeated reports of one matter raise the original case's urgency (issue #4 §5)."""
    urgency = fields.String(required=True, validate=validate.OneOf(("normal", "urgent")))
    reports = fields.Integer(required=True, strict=True, validate=validate.Range(min=2))   # reports of it so far
    merged_case_id = fields.String(required=True, validate=_ID)


class CaseAssigned(CaseEvent):
    unit = fields.String(required=True, validate=_ID)
    cadre = fields.String(required=True, validate=_ID)
    tier = fields.String(required=True, validate=_TIER)
    response_due = Instant(required=True)
    resolution_due = Instant(required=True)
    policy_version = fields.Integer(required=True, strict=True)
    rule = fields.String(required=True, validate=_TEXT)     # the rule that decided, in plain words
    first_contact = fields.String(load_default=None, allow_none=True, validate=_ID)


class CaseAccepted(CaseEvent):
    cadre = fields.String(required=True, validate=_ID)
    unit = fields.String(required=True, validate=_ID)


class CaseProgressNoted(CaseEvent):
    cadre = fields.String(required=True, validate=_ID)
    note = fields.String(required=True, validate=_TEXT)
    reply_to = fields.String(load_default=None, allow_none=True,           # the written reply 督办 requires
                             validate=validate.OneOf(("supervise", "listed")))


class CaseTransferred(CaseEvent):
    from_unit = fields.String(required=True, validate=_ID)
    to_unit = fields.String(required=True, validate=_ID)
    to_cadre = fields.String(required=True, validate=_ID)
    reason = fields.String(required=True, validate=_TEXT)
    resolution_due = Instant(required=True)
    policy_version = fields.Integer(required=True, strict=True)
    response_due = Instant(load_default=None, allow_none=True)
    rule = fields.String(load_default=None, allow_none=True, validate=_TEXT)
    to_tier = fields.String(load_default=None, allow_none=True, validate=_TIER)


class CaseEscalated(CaseEvent):
    from_unit = fields.String(required=True, validate=_ID)
    from_tier = fields.String(required=True, validate=_TIER)
    to_unit = fields.String(required=True, validate=_ID)
    to_tier = fields.String(required=True, validate=_TIER)
    to_cadre = fields.String(required=True, validate=_ID)
    reason = fields.String(required=True, validate=_TEXT)
    automatic = fields.Boolean(required=True, truthy={True}, falsy={False})
    resolution_due = Instant(required=True)
    policy_version = fields.Integer(required=True, strict=True)
    response_due = Instant(load_default=None, allow_none=True)
    rule = fields.String(load_default=None, allow_none=True, validate=_TEXT)


class CaseReturned(CaseEvent):
    """退回: the holding unit says the case is not theirs; it waits for a supervisor to re-dispatch it."""
    from_unit = fields.String(required=True, validate=_ID)
    cadre = fields.String(required=True, validate=_ID)
    reason = fields.String(required=True, validate=_TEXT)


class CaseJointHandlingStarted(CaseEvent):
    lead_unit = fields.String(required=True, validate=_ID)
    co_units = fields.List(fields.String(validate=_ID), required=True, validate=validate.Length(min=1))
    by = fields.String(load_default=None, allow_none=True, validate=_ID)


class CasePressure(CaseEvent):
    """Graded pressure on overdue work: 催办 (chase), 督办 (supervise), 挂牌督办 (listed)."""
    level = fields.String(required=True, validate=validate.OneOf(("chase", "supervise", "listed")))
    by = fields.String(required=True, validate=_ID)
    note = fields.String(required=True, validate=_TEXT)
    reply_due = Instant(load_default=None, allow_none=True)      # a written reply is owed by then


class CaseDeadlineEvent(CaseEvent):
    deadline = fields.String(required=True, validate=validate.OneOf(("response", "resolution")))
    due = Instant(required=True)
    holder_unit = fields.String(required=True, validate=_ID)
    holder_cadre = fields.String(required=True, validate=_ID)


class CaseResolved(CaseEvent):
    cadre = fields.String(required=True, validate=_ID)
    unit = fields.String(required=True, validate=_ID)
    on_site = fields.Boolean(required=True, truthy={True}, falsy={False})
    resolution = fields.String(required=True, validate=_TEXT)


class CaseDelivered(CaseEvent):
    channel = fields.String(required=True, validate=_ID)


class CaseFollowedUp(CaseEvent):
    """回访: the resident's rating of the result (satisfied, basically satisfied, unsatisfied), or
    `unreachable` after the county's asks went unanswered; and, when the resident answered it, whether
    the matter was actually solved (`solved`, for 解决率; issue #17 §3)."""
    rating = fields.String(required=True, validate=validate.OneOf(RATINGS))
    via = fields.String(required=True, validate=validate.OneOf(("sms", "call", "visit", "online")))
    # optional (added without a new version; absent in older events)
    asks = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0, max=20))
    by = fields.String(load_default=None, allow_none=True, validate=_ID)      # the operator who entered it
    solved = fields.Boolean(load_default=None, allow_none=True, truthy={True}, falsy={False})   # absent: not asked


class CaseReason(CaseEvent):
    reason = fields.String(required=True, validate=_TEXT)


class NotificationEvent(_Strict):
    key = fields.String(required=True, validate=validate.Length(min=1, max=300))
    case_id = fields.String(load_default=None, allow_none=True, validate=_ID)
    channel = fields.String(required=True, validate=validate.OneOf(("log", "sms", "email", "webhook")))
    template = fields.String(required=True, validate=_ID)
    recipient_role = fields.String(required=True, validate=validate.OneOf(("resident", "cadre", "supervisor", "board", "subscriber")))
    recipient_masked = fields.String(required=True, validate=validate.Length(max=100))
    caused_by = fields.String(required=True, validate=_ID)
    attempts = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class NotificationFailed(NotificationEvent):
    error = fields.String(required=True, validate=_TEXT)


class VisitLogged(_Strict):
    cadre = fields.String(required=True, validate=_ID)
    county = fields.String(required=True, validate=_ID)
    day = fields.Date(required=True)
    hamlet = fields.String(required=True, validate=_ID)
    households = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class PolicyPublished(_Strict):
    county = fields.String(required=True, validate=_ID)
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    digest = fields.String(required=True, validate=validate.Length(equal=64))
    policy = fields.Dict(required=True)   # the validated county policy document (minqing.county)


class AssessmentPublished(_Strict):
    county = fields.String(required=True, validate=_ID)
    period = fields.String(required=True, validate=_ID)
    rules_version = fields.Integer(required=True, strict=True)
    digest = fields.String(required=True, validate=validate.Length(equal=64))


class AssessmentRulesPublished(_Strict):
    county = fields.String(required=True, validate=_ID)
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    digest = fields.String(required=True, validate=validate.Length(equal=64))
    rules = fields.Dict(required=True)      # the validated rules document (services/assessment/rules.py)


class ClockSet(_Strict):
    """The demo clock (minqing.democlock), demo deployments only: demo time was `demo_at` at the real
    instant `real_at` and runs on at `rate` demo seconds per real second. Stream `system-clock`."""
    demo_at = Instant(required=True)
    real_at = Instant(required=True)
    rate = fields.Float(required=True, validate=validate.Range(min=0, max=100_000))
    previous = Instant(load_default=None, allow_none=True)     # the demo time it replaced


class ClockAdvanced(ClockSet):
    by_seconds = fields.Float(required=True, validate=validate.Range(min=0, min_inclusive=False))


@dataclass(frozen=True)
class EventType:
    name: str
    version: int
    schema: type[Schema]
    # upcasters[v] lifts data of schema version v to v+1
    upcasters: Mapping[int, Callable[[dict], dict]] = field(default_factory=dict)

    @property
    def cloudevents_type(self) -> str:
        return f"cn.minqing.{self.name}"

    @property
    def validator(self) -> Schema:
        """One schema instance per type (building one costs as much as validating with it)."""
        cached = _VALIDATORS.get((self.name, self.version))
        if cached is None:
            cached = _VALIDATORS[(self.name, self.version)] = self.schema()
        return cached


_VALIDATORS: dict[tuple[str, int], Schema] = {}


def _catalogue(*entries: EventType) -> dict[str, EventType]:
    return {e.name: e for e in entries}


CATALOGUE: dict[str, EventType] = _catalogue(
    EventType("case.reported", 1, CaseReported),
    EventType("case.merged", 1, CaseMerged),
    EventType("case.urgency_raised", 1, CaseUrgencyRaised),
    EventType("case.assigned", 1, CaseAssigned),
    EventType("case.accepted", 1, CaseAccepted),
    EventType("case.progress_noted", 1, CaseProgressNoted),
    EventType("case.transferred", 1, CaseTransferred),
    EventType("case.escalated", 1, CaseEscalated),
    EventType("case.returned", 1, CaseReturned),
    EventType("case.joint_handling_started", 1, CaseJointHandlingStarted),
    EventType("case.chased", 1, CasePressure),
    EventType("case.supervised", 1, CasePressure),
    EventType("case.deadline_warned", 1, CaseDeadlineEvent),
    EventType("case.overdue", 1, CaseDeadlineEvent),
    EventType("case.resolved", 1, CaseResolved),
    EventType("case.delivered", 1, CaseDelivered),
    EventType("case.followed_up", 1, CaseFollowedUp),
    EventType("case.reopened", 1, CaseReason),
    EventType("case.closed", 1, CaseReason),
    EventType("case.withdrawn", 1, CaseReason),
    EventType("notification.sent", 1, NotificationEvent),
    EventType("notification.failed", 1, NotificationFailed),
    EventType("visit.logged", 1, VisitLogged),
    EventType("policy.published", 1, PolicyPublished),
    EventType("assessment.published", 1, AssessmentPublished),
    EventType("assessment.rules_published", 1, AssessmentRulesPublished),
    EventType("clock.set", 1, ClockSet),
    EventType("clock.advanced", 1, ClockAdvanced),
)


def event_type(name: str) -> EventType:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ContractViolation(name, {"type": [f"unknown event type {name!r}"]}) from None


def _raw_personal_data(value: Any, path: str = "") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if isinstance(value, str):
        kind = find_raw_personal_data(value)
        if kind:
            found[path or "data"] = [f"contains {kind}; events carry masked forms only"]
        # What the door refuses (minqing.text) cannot be recorded either, whoever appends: a NUL
        # cannot be stored by PostgreSQL, a lone surrogate cannot be hashed or published.
        if (why := text_problem(value)) is not None:
            found.setdefault(path or "data", []).append(why)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found.update(_raw_personal_data(item, f"{path}.{key}" if path else str(key)))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found.update(_raw_personal_data(item, f"{path}[{i}]"))
    return found


def validate_event(name: str, data: Mapping[str, Any], schema_version: int | None = None) -> int:
    """Check `data` against the contract; return the schema version it was validated as.

    Only the current version may be appended: history is upcast on read, never written old.
    """
    etype = event_type(name)
    if schema_version not in (None, etype.version):
        raise ContractViolation(name, {"schema_version": [f"only version {etype.version} can be appended"]})
    # The compiled checks answer yes only where the full ones below would (minqing.contract_fast).
    if contract_fast.compile_schema(etype.schema)(data) and contract_fast.strings_clean(data):
        return etype.version
    errors = etype.validator.validate(dict(data))
    errors.update(_raw_personal_data(data))
    if errors:
        raise ContractViolation(name, errors)
    return etype.version


def upcast(name: str, schema_version: int, data: dict) -> tuple[int, dict]:
    """Lift stored data to the current schema version, one step at a time."""
    etype = CATALOGUE.get(name)
    if etype is None:
        return schema_version, data
    while schema_version < etype.version:
        data = etype.upcasters[schema_version](data)
        schema_version += 1
    return schema_version, data
