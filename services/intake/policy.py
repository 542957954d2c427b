"""Intake's section of the county policy: `duplicates` (registered as a minqing.county.Section)."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from minqing.county import Section


class _Duplicates(Schema):
    """A report matching an open case of the same category — from the same resident, or at the same
    spot (the same address, or coordinates within `radius_m`) within `window_hours` — is merged into
    it (issue #4 §5)."""
    window_hours = fields.Integer(load_default=72, strict=True, validate=validate.Range(min=1, max=24 * 90))
    radius_m = fields.Integer(load_default=100, strict=True, validate=validate.Range(min=1, max=5000))


SECTION = Section("duplicates", _Duplicates)
