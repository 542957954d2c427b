"""Days and periods in the county's local time (issue #18 §1b, #12 §11a): the one place where assessment
turns an instant into a day or a month.

People in a county live by its zone (Asia/Shanghai for every county so far), so "today", "this month"
and the month a fact counts in are local. Between 00:00 and 08:00 Beijing time the UTC date is still
yesterday's: a check against the machine's or UTC's date refuses today's visit and files figures under
the wrong month at every month's end. Every function here takes the instant from its caller (the
injected clock, or an event's recorded time), never from the machine.
"""
from __future__ import annotations

import functools
import re
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from minqing.clock import isoformat, parse_instant

DEFAULT_TZ = "Asia/Shanghai"
PERIOD = re.compile(r"^(2\d{3})(?:-(0[1-9]|1[0-2])|-H([12]))?$")      # years 2000-2999
VISIT_WINDOW_DAYS = 366          # a visit may be logged up to a year late


class PeriodError(ValueError):
    pass


def local_date(moment: datetime, tz: str) -> date:
    """The calendar day `moment` falls on in the zone `tz`."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not allowed; attach a timezone")
    return moment.astimezone(ZoneInfo(tz)).date()


def local_day(instant: str, tz: str) -> str:
    """The local day (YYYY-MM-DD) of a recorded instant: the day a fact is dated by."""
    return local_date(parse_instant(instant), tz).isoformat()


def local_month(instant: str, tz: str) -> str:
    """The local month (YYYY-MM) of a recorded instant: `local_day(instant, tz)[:7]`, without parsing
    it when it is in the ledger's one form (clock.isoformat: fixed width, UTC, so ordered as text),
    by comparing it with where the local months around its UTC month begin. A rebuild dates every
    fact by it."""
    if len(instant) != 27 or instant[-1] != "Z":
        return local_day(instant, tz)[:7]
    utc_month = instant[:7]
    previous, this_starts, current, next_starts, following = _month_starts(utc_month, tz)
    if instant >= next_starts:
        return following
    return current if instant >= this_starts else previous


@functools.lru_cache(maxsize=1024)
def _month_starts(utc_month: str, tz: str) -> tuple[str, str, str, str, str]:
    year, month = int(utc_month[:4]), int(utc_month[5:])
    prev_m = (year - (month == 1), 12 if month == 1 else month - 1)
    next_m = (year + (month == 12), month % 12 + 1)
    start = lambda y, m: isoformat(datetime.combine(date(y, m, 1), time(0), tzinfo=ZoneInfo(tz)))  # noqa: E731
    return (f"{prev_m[0]}-{prev_m[1]:02d}", start(year, month), utc_month, start(*next_m),
            f"{next_m[0]}-{next_m[1]:02d}")


def current_period(now: datetime, tz: str) -> str:
    """The month (YYYY-MM) the county is living in at `now`: the default period of every figure."""
    return local_date(now, tz).strftime("%Y-%m")


def visit_day_error(day: date, now: datetime, tz: str) -> str | None:
    """Why a visit cannot be dated `day` at `now` in the county, or None: it must be a day of the past
    year up to the county's today."""
    today = local_date(now, tz)
    if day > today or (today - day).days > VISIT_WINDOW_DAYS:
        return f"must be a day of the past year up to today ({today.isoformat()} in {tz}), not in the future"
    return None


def months_of(period: str) -> list[str]:
    """`2026-03` → [2026-03]; `2026-H1` → January to June; `2026` → the twelve months."""
    m = PERIOD.match(period or "")
    if not m:
        raise PeriodError("must be a month (2026-03), a half-year (2026-H1, 2026-H2) or a year (2026), "
                          "years 2000-2999")
    year, month, half = m.groups()
    if month:
        return [f"{year}-{month}"]
    months = range(1, 7) if half == "1" else range(7, 13) if half == "2" else range(1, 13)
    return [f"{year}-{n:02d}" for n in months]


def period_end(period: str, tz: str) -> str:
    """The instant a period ends (local midnight after its last day), for choosing its rules."""
    last = months_of(period)[-1]
    year, month = int(last[:4]), int(last[5:])
    following = date(year + (month == 12), month % 12 + 1, 1)
    return isoformat(datetime.combine(following, time(0), tzinfo=ZoneInfo(tz)))
