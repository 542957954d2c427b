"""Times as people read them: in the county's zone (issue #18.1a).

The ledger, the tables and the events keep instants in UTC (`minqing.clock.isoformat`); everything
shown to a person — API views, messages, reports, the CLI — shows them in the county's zone
(`timezone` of its policy, Asia/Shanghai for every sample county). Two forms, one place:

- `local_iso`: machine fields of a view, ISO 8601 with the zone's offset, to the second:
  `2026-12-01T03:27:00+08:00` (the same instant as `2026-11-30T19:27:00Z`, as Open311 shows it);
- `plain`: plain words, to the minute: `2026年12月1日 03:27` (zh), `1 Dec 2026 03:27` (en).
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from minqing.clock import parse_instant

DEFAULT_ZONE = "Asia/Shanghai"


def _local(instant: str | datetime, tz: str | None) -> datetime:
    at = parse_instant(instant) if isinstance(instant, str) else instant
    if at.tzinfo is None:
        raise ValueError("naive datetimes are not allowed; attach a timezone")
    return at.astimezone(ZoneInfo(tz or DEFAULT_ZONE))


def local_iso(instant: str | datetime | None, tz: str | None) -> str | None:
    """`2026-12-01T03:27:00+08:00`; None stays None."""
    if instant is None or instant == "":
        return None
    return _local(instant, tz).replace(microsecond=0).isoformat()


def plain(instant: str | datetime | None, tz: str | None, language: str = "zh") -> str:
    """`2026年12月1日 03:27` (zh) or `1 Dec 2026 03:27` (en); "" for no instant."""
    if instant is None or instant == "":
        return ""
    local = _local(instant, tz)
    if language == "en":
        return f"{local.day} {local.strftime('%b %Y %H:%M')}"
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"


def local_fields(row: dict, names, tz: str | None) -> dict:
    """`row` with the instants under `names` shown by `local_iso` (listings: tokens, the access log)."""
    return {k: local_iso(v, tz) if k in names else v for k, v in row.items()}


def zone_of(policy) -> str:
    """The zone of a county policy (a CountyPolicy or its document), the default when there is none."""
    if policy is None:
        return DEFAULT_ZONE
    doc = getattr(policy, "doc", policy)
    return (doc or {}).get("timezone") or DEFAULT_ZONE
