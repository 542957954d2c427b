"""Quiet hours (issue #6 §4): no SMS to residents at night unless the case is urgent. The window is
the county's `notify.quiet_hours` in local time and may run past midnight (21:00–08:00)."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def defer_for_quiet(at: datetime, quiet: dict | None, tz: str) -> datetime:
    """`at` itself when it falls outside the quiet window, else the window's end (in UTC)."""
    if not quiet:
        return at
    start, end = _hhmm(quiet["start"]), _hhmm(quiet["end"])
    if start == end:
        return at
    local = at.astimezone(ZoneInfo(tz))
    now = local.time()
    if start < end:
        inside = start <= now < end
        end_day = local.date()
    else:                                   # across midnight
        inside = now >= start or now < end
        end_day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not inside:
        return at
    resume = datetime.combine(end_day, end, tzinfo=ZoneInfo(tz))
    return resume.astimezone(at.tzinfo)
