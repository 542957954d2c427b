"""Notify's section of the county policy: `notify` (issue #6; registered as a minqing.county.Section)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from minqing.county import _CODE, Section

_HHMM = validate.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", error="must be a local time HH:MM")

# The notify templates a county may override (services/notify/templates/<language>/<name>.txt).
NOTIFY_TEMPLATES = ("receipt", "assignment", "deadline_warning", "overdue", "escalation", "result",
                    "follow_up", "on_site_day")
LANGUAGES = ("zh", "en")


class _QuietHours(Schema):
    """No SMS to residents between `start` and `end` (local time), unless the case is urgent."""
    start = fields.String(required=True, validate=_HHMM)
    end = fields.String(required=True, validate=_HHMM)


class _FollowUp(Schema):
    """回访: asked `after_minutes` after the result is delivered; a resident who has not replied within
    `reply_within_minutes` is asked again, up to `attempts` asks, then recorded as unreachable."""
    after_minutes = fields.Integer(load_default=24 * 60, strict=True, validate=validate.Range(min=0, max=60 * 24 * 30))
    reply_within_minutes = fields.Integer(load_default=48 * 60, strict=True,
                                          validate=validate.Range(min=1, max=60 * 24 * 30))
    attempts = fields.Integer(load_default=2, strict=True, validate=validate.Range(min=1, max=5))


class _OnSiteDays(Schema):
    """Seed 004: 规定每月10日下午为驻点工作日，提前两天发布公告 — the units of `tier` hold an on-site day
    on `day_of_month` from `time`; it is announced `announce_days_ahead` days before, at `announce_at`."""
    tier = fields.String(required=True, validate=_CODE)
    day_of_month = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=28))
    time = fields.String(load_default="14:00", validate=_HHMM)
    announce_days_ahead = fields.Integer(load_default=2, strict=True, validate=validate.Range(min=0, max=14))
    announce_at = fields.String(load_default="09:00", validate=_HHMM)


def _template_text(value: str) -> None:
    import jinja2.sandbox
    try:
        jinja2.sandbox.SandboxedEnvironment().parse(value)
    except jinja2.TemplateSyntaxError as exc:
        raise ValidationError(f"not a valid Jinja2 template: {exc.message} (line {exc.lineno})")


class _Notify(Schema):
    """What notify does for this county (issue #6)."""
    language = fields.String(load_default="zh", validate=validate.OneOf(LANGUAGES))
    quiet_hours = fields.Nested(_QuietHours, load_default=lambda: {"start": "21:00", "end": "08:00"}, allow_none=True)
    follow_up = fields.Nested(_FollowUp, load_default=lambda: _FollowUp().load({}))
    on_site_days = fields.Nested(_OnSiteDays, load_default=None, allow_none=True)
    allow_private_webhooks = fields.Boolean(load_default=False)   # subscribers on the county's own network
    templates = fields.Dict(
        keys=fields.String(validate=validate.OneOf(LANGUAGES)),
        values=fields.Dict(keys=fields.String(validate=validate.OneOf(NOTIFY_TEMPLATES)),
                           values=fields.String(validate=[validate.Length(min=1, max=2000), _template_text])),
        load_default=dict)


def notify_defaults() -> dict:
    return _Notify().load({})


def _check(policy) -> dict[str, list[str]]:
    on_site = policy["notify"]["on_site_days"]
    tiers = {t["code"] for t in policy["tiers"]}
    if on_site is not None and on_site["tier"] not in tiers:
        return {"on_site_days.tier": [f"{on_site['tier']!r} is not one of this county's tiers"]}
    return {}


SECTION = Section("notify", _Notify, _check)
