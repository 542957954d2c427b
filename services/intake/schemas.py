"""What a report must look like when it arrives over HTTP (marshmallow). The one place for intake's
input rules: every field that is wrong is named, with why — all of them in one answer, the county
catalogue's (county, category, places) included when the schema is given the ledger's engine.

Free text obeys minqing.text (the door's rule: no control characters but line breaks in multi-line
text, no unpaired surrogates); attachments are http(s) links (minqing.text.link_problem)."""
from __future__ import annotations

import re
from datetime import timezone

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from minqing.contract import CHANNELS, KINDS
from minqing.db import read_transaction
from minqing.personal_data import find_raw_personal_data
from minqing.text import LineField, TextField, link_problem
from services.intake.projection import load_county

_PHONE = re.compile(r"^(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}$|^0\d{2,3}-?\d{7,8}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
NOT_BLANK = validate.Regexp(r"\S", error="must not be blank")

# Channels whose reports are taken on paper and registered later (民情下访, 便民服务岗 on market day,
# 意见箱, 群众之家): only these may carry an earlier `reported_at`, and then the paper form's reference.
OFFLINE_CHANNELS = ("field_visit", "market_post", "suggestion_box", "service_hall")
# A suggestion box takes unsigned notes: the one channel where the reporter may be unknown.
ANONYMOUS_CHANNELS = ("suggestion_box",)


def id_number_ok(value: str) -> bool:
    """An 18-character resident identity number (GB 11643) with a valid check character."""
    value = value.strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", value):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS))
    return "10X98765432"[total % 11] == value[17]


def _link(value: str) -> None:
    if (why := link_problem(value)) is not None:
        raise ValidationError(why)


class CoordinatesIn(Schema):
    lat = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=-90, max=90))
    lon = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=-180, max=180))


class LocationIn(Schema):
    township = LineField(required=True, validate=[validate.Length(min=1, max=100), NOT_BLANK])
    village = LineField(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100))
    hamlet = LineField(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100))
    address = TextField(load_default=None, allow_none=True, validate=validate.Length(min=1, max=300))
    coordinates = fields.Nested(CoordinatesIn, load_default=None, allow_none=True)


class ReporterIn(Schema):
    name = LineField(required=True, validate=[validate.Length(min=1, max=50), NOT_BLANK])
    phone = LineField(required=True, validate=validate.Length(min=7, max=20))
    id_number = LineField(load_default=None, allow_none=True, validate=validate.Length(equal=18))

    @validates("phone")
    def _phone(self, value, **_):
        if not _PHONE.match(value.strip()):
            raise ValidationError("not a mainland mobile number (11 digits starting with 1) or a landline with area code")

    @validates("id_number")
    def _id_number(self, value, **_):
        if value is not None and not id_number_ok(value):
            raise ValidationError("not a valid 18-character identity number (check character mismatch)")


class AttachmentIn(Schema):
    """A stored file, by its http(s) address: a client app shows it as a link, so no other scheme
    (`javascript:`, `data:`, `file:`) may enter (issue #12)."""
    ref = LineField(required=True, validate=[validate.Length(min=1, max=500), _link])
    media_type = LineField(load_default=None, allow_none=True,
                           validate=validate.Regexp(r"^[a-z]+/[a-z0-9.+-]+$", error="must be a media type such as image/jpeg"))
    name = LineField(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200))


def catalogue_problems(policy, data: dict) -> dict:
    """What in a report does not fit the county's catalogue: its category and places (codes or names)."""
    errors: dict = {}
    if data.get("category") is not None and policy.category(data["category"]) is None:
        errors["category"] = [f"{data['category']!r} is not a category code of {policy.doc['name']} "
                              f"(see GET /api/v1/counties/{policy.county})"]
    loc = data.get("location")
    if loc:
        try:
            policy.resolve_place(loc["township"], loc.get("village"), loc.get("hamlet"))
        except KeyError as exc:
            tier = exc.args[0]
            errors["location"] = {tier: [f"{loc.get(tier)!r} is not a {tier} of {policy.doc['name']} "
                                         f"(see GET /api/v1/counties/{policy.county})"]}
    return errors


class ReportIn(Schema):
    """A report. Given `engine` (the ledger's), the county catalogue is checked here too, so a bad
    channel and an unknown category are named in one answer (registration checks them again, as it
    must for every channel)."""
    county = LineField(required=True, validate=validate.Length(min=1, max=40))
    channel = LineField(required=True, validate=validate.OneOf(CHANNELS))
    category = LineField(required=True, validate=validate.Length(min=1, max=100))
    kind = LineField(load_default="help", validate=validate.OneOf(KINDS))
    urgency = LineField(load_default="normal", validate=validate.OneOf(("normal", "urgent")))
    summary = TextField(required=True, validate=[validate.Length(min=1, max=2000), NOT_BLANK])
    details = TextField(load_default=None, allow_none=True, validate=validate.Length(min=1, max=8000))
    location = fields.Nested(LocationIn, required=True)
    reporter = fields.Nested(ReporterIn, load_default=None, allow_none=True)
    attachments = fields.List(fields.Nested(AttachmentIn), load_default=list, validate=validate.Length(max=10))
    reported_at = fields.AwareDateTime(load_default=None, allow_none=True)
    paper_form_ref = LineField(load_default=None, allow_none=True,
                               validate=[validate.Length(min=1, max=100), NOT_BLANK])
    agent = LineField(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100))

    def __init__(self, *args, engine=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.engine = engine

    @validates("paper_form_ref")
    def _not_personal(self, value, **_):
        """The reference is recorded as given (masking would break it), so it may not hold a phone,
        an identity number or an e-mail address."""
        if value is not None and (kind := find_raw_personal_data(value)) is not None:
            raise ValidationError(f"contains {kind}: give the paper form's reference only")

    @validates("reported_at")
    def _sane_time(self, value, **_):
        if value is None:
            return
        try:
            year = value.astimezone(timezone.utc).year
        except (OverflowError, ValueError):
            year = 0
        if not 2000 <= year <= 2100:
            raise ValidationError("must be a time between the years 2000 and 2100")

    @validates_schema(skip_on_field_errors=False)     # so a bad body lists every problem at once
    def _channel_rules(self, data, **_):
        errors: dict[str, list[str]] = {}
        channel = data.get("channel")
        if data.get("reporter") is None and channel not in ANONYMOUS_CHANNELS:
            errors["reporter"] = ["required (only a suggestion-box note may be anonymous)"]
        if data.get("reported_at") is not None:
            if channel not in OFFLINE_CHANNELS:
                errors["reported_at"] = [f"only reports taken offline ({', '.join(OFFLINE_CHANNELS)}) may be "
                                         "registered with an earlier time"]
            elif not data.get("paper_form_ref"):
                errors["paper_form_ref"] = ["required with reported_at: the reference of the paper form"]
        if data.get("agent") is not None and channel != "proxy_agent":
            errors["agent"] = ["only a proxy_agent report names an agent"]
        if self.engine is not None and data.get("county") is not None:
            with read_transaction(self.engine) as conn:
                policy = load_county(conn, data["county"])
            if policy is not None:   # an unknown county is the service's to answer, after authorization
                errors.update(catalogue_problems(policy, data))
        if errors:
            raise ValidationError(errors)


# ---- answers (documented in the OpenAPI document; the property-based test holds us to them) -------

class _Links(Schema):
    case = fields.String(required=True)
    track = fields.String(required=True)


class ReportOut(Schema):
    case_id = fields.String(required=True)
    tracking_no = fields.String(required=True)
    pin = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("reported", "merged")))
    merged_into = fields.String(required=True, allow_none=True)
    position = fields.Integer(required=True)
    links = fields.Nested(_Links, required=True)


class WeChatOut(Schema):
    case_id = fields.String(required=True)
    tracking_no = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("reported", "merged", "already_registered")))
    pin = fields.String()
    merged_into = fields.String(allow_none=True)


class _HistoryEntry(Schema):
    position = fields.Integer(required=True)
    version = fields.Integer(required=True)
    type = fields.String(required=True)
    at = fields.String(required=True)                  # local time, ISO 8601 with the offset (#18.1a)
    when = fields.String(required=True)                # the same in plain words
    by = fields.String(required=True, allow_none=True)           # the actor
    by_name = fields.String(required=True, allow_none=True)      # a cadre's name
    what = fields.Dict(required=True)                  # what was done (services/intake/caseview.py, #18.4)
    names = fields.Dict()                              # names of the units and cadres in `what`


class CaseOut(Schema):
    case_id = fields.String(required=True)
    tracking_no = fields.String(required=True, allow_none=True)
    county = fields.String(required=True, allow_none=True)
    status = fields.String(required=True)
    channel = fields.String(required=True, allow_none=True)
    category = fields.String(required=True, allow_none=True)
    kind = fields.String(required=True, allow_none=True)
    urgency = fields.String(required=True, allow_none=True)
    summary = fields.String(required=True, allow_none=True)
    location = fields.Dict(required=True)
    reported_at = fields.String(required=True, allow_none=True)
    registered_at = fields.String(required=True, allow_none=True)
    assignment = fields.Dict(required=True, allow_none=True)
    version = fields.Integer(required=True)
    timezone = fields.String(required=True)
    rating = fields.String(required=True, allow_none=True)
    history = fields.List(fields.Nested(_HistoryEntry), required=True)


class _TrackEntry(Schema):
    at = fields.String(required=True)
    when = fields.String(required=True)
    text = fields.String(required=True)


class TrackQuery(Schema):
    pin = fields.String(load_default=None, validate=validate.Length(max=20))   # or header X-Minqing-Pin
    lang = fields.String(load_default=None, validate=validate.OneOf(("zh", "en")))


class TrackOut(Schema):
    tracking_no = fields.String(required=True)
    status = fields.String(required=True)
    status_text = fields.String(required=True)
    category = fields.String(required=True, allow_none=True)
    reported_at = fields.String(required=True, allow_none=True)
    resolution_due = fields.String(required=True, allow_none=True)
    history = fields.List(fields.Nested(_TrackEntry), required=True)


class CatalogueOut(Schema):
    county = fields.String(required=True)
    name = fields.String(required=True)
    policy_version = fields.Integer(required=True)
    tiers = fields.List(fields.Dict(), required=True)
    categories = fields.List(fields.Dict(), required=True)
    townships = fields.List(fields.Dict(), required=True)
    units = fields.List(fields.Dict(), required=True)


class AccessLogQuery(Schema):
    case_id = fields.String(load_default=None, validate=validate.Length(min=1, max=100))


class AccessLogOut(Schema):
    county = fields.String(required=True)
    timezone = fields.String(required=True)       # `at` of each read is local time with the offset
    reads = fields.List(fields.Dict(), required=True)
