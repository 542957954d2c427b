"""Working days and deadlines, on the calendar a county's policy publishes (DESIGN principle 7).

Chinese public holidays move every year and come with make-up working days on weekends (调休), as
the State Council announces each autumn for the next year. A county policy lists them:

    calendar:
      holidays: [2026-10-01, …]        # days off, even on a weekday
      workdays: [2026-09-20, …]        # make-up working days, even on a weekend
      covers: [2026]                   # the years those lists are complete for

A deadline decided under a policy version uses that version's calendar, so a replay reproduces it.
Working-day limits end at the close of the Nth working day after the day of registration (local
time): "5 个工作日内办结" registered on a Friday morning ends Friday of the following week, at 24:00.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY_KINDS = ("working", "calendar")


@dataclass(frozen=True)
class WorkCalendar:
    timezone: str
    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)
    covers: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def from_policy(cls, policy: dict) -> "WorkCalendar":
        cal = policy.get("calendar") or {}
        return cls(policy["timezone"],
                   frozenset(date.fromisoformat(str(d)) for d in cal.get("holidays", [])),
                   frozenset(date.fromisoformat(str(d)) for d in cal.get("workdays", [])),
                   frozenset(int(y) for y in cal.get("covers", [])))

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The end (local 24:00) of the `days`-th working day after the local day of `start`."""
        zone = ZoneInfo(self.timezone)
        day = start.astimezone(zone).date()
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=zone)

    def working_days_left(self, now: datetime, due: datetime) -> int | None:
        """Whole working days left before `due`, today not counted: the inverse of add_working_days,
        so a case registered today with "5 个工作日内办结" has 5 left, on its last day 0; None once due."""
        if due <= now:
            return None
        zone = ZoneInfo(self.timezone)
        day, last = now.astimezone(zone).date(), (due - timedelta(microseconds=1)).astimezone(zone).date()
        left = 0
        while day < last:
            day += timedelta(days=1)
            left += self.is_working_day(day)
        return left

    def uncovered_years(self, start: datetime, end: datetime) -> list[int]:
        """Years between `start` and `end` whose holidays the calendar does not list: there, only
        weekends are days off, until a policy version with that year's calendar is published."""
        return [y for y in range(start.year, end.year + 1) if y not in self.covers]

    @property
    def last_year(self) -> int | None:
        """The last year whose holidays the calendar lists (None: it lists none)."""
        return max(self.covers) if self.covers else None

    def warning(self, latest_due: datetime | None) -> dict | None:
        """Why deadlines may be wrong: the latest open deadline `latest_due` lies in a year the
        calendar does not list, so they skip weekends only there (holidays and 调休 unknown)."""
        if latest_due is None:
            return None
        year = latest_due.astimezone(ZoneInfo(self.timezone)).year
        last = self.last_year
        if last is not None and year <= last:
            return None
        known = f"lists holidays up to {last}" if last is not None else "lists no holidays"
        return {"code": "calendar_ends", "last_year": last, "latest_due_year": year,
                "message": f"the county's calendar {known}, but open deadlines run into {year}: there they skip "
                           f"weekends only; build the year's calendar (`minqing calendar build {year}`), include "
                           f"it in the county's policy and publish it"}

    def deadline(self, start: datetime, amount: int, kind: str) -> datetime:
        if kind == "working":
            return self.add_working_days(start, amount)
        if kind == "calendar":
            return start + timedelta(days=amount)
        raise ValueError(f"day kind must be one of {DAY_KINDS}")
