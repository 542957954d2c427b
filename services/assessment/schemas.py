"""The JSON shapes of assessment's HTTP entrypoints (services/assessment/service.py): queries and bodies."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from services.assessment import scorecards as sc


def _period(value: str) -> None:
    try:
        sc.months_of(value)
    except sc.PeriodError as exc:
        raise ValidationError(str(exc))


class PeriodQuery(Schema):
    period = fields.String(load_default=None, validate=_period,
                           metadata={"description": "2026-03, 2026-H1 or 2026; default: this month"})


class ExplainQuery(PeriodQuery):
    figure = fields.String(required=True, validate=validate.OneOf(tuple(sc.RATE_PARTS) + sc.COUNTS))
    kind = fields.String(load_default="cadre", validate=validate.OneOf(sc.KINDS))
    subject = fields.String(load_default=None, validate=validate.Length(min=1, max=100),
                            metadata={"description": "cadre id, unit code, township code or county; "
                                                     "default: the token's own cadre"})


class VisitIn(Schema):
    day = fields.Date(required=True, metadata={"description": "the county's local day of the visit, up to today "
                                                              "there (not the UTC date)"})
    hamlet = fields.String(required=True, validate=validate.Length(min=1, max=100),
                           metadata={"description": "the hamlet (or village/community) code visited"})
    households = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=500))


class VisitOut(Schema):
    event_id = fields.String(required=True)
    position = fields.Integer(required=True)
    cadre = fields.String(required=True)
    day = fields.String(required=True)
