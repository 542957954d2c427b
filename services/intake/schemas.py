"""What a report must look like when it arrives over HTTP (marshmallow)."""
from __future__ import annotations

import re
from datetime import timezone

from marshmallow import Schema, ValidationError, fields, validate, validates

from minqing.contract import CHANNELS, KINDS

_PHONE = re.compile(r"^(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}$|^0\d{2,3}-?\d{7,8}$")


class LocationIn(Schema):
    township = fields.String(required=True, validate=validate.Length(min=1, max=100))
    village = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100))
    hamlet = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=100))


class ReporterIn(Schema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=50), validate.Regexp(r"\S", error="must not be blank")])
    phone = fields.String(required=True, validate=validate.Length(min=7, max=20))

    @validates("phone")
    def _phone(self, value, **_):
        if not _PHONE.match(value.strip()):
            raise ValidationError("not a mainland mobile number (11 digits starting with 1) or a landline with area code")


NOT_BLANK = validate.Regexp(r"\S", error="must not be blank")


class ReportIn(Schema):
    county = fields.String(required=True, validate=validate.Length(min=1, max=40))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    category = fields.String(required=True, validate=validate.Length(min=1, max=100))
    kind = fields.String(load_default="help", validate=validate.OneOf(KINDS))
    urgency = fields.String(load_default="normal", validate=validate.OneOf(("normal", "urgent")))
    summary = fields.String(required=True, validate=[validate.Length(min=1, max=2000), NOT_BLANK])
    location = fields.Nested(LocationIn, required=True)
    reporter = fields.Nested(ReporterIn, required=True)
    reported_at = fields.AwareDateTime(load_default=None, allow_none=True)

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
