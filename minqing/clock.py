"""Injected time (DESIGN principle 10): nothing in Minqing reads the wall clock directly."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone


class Clock:
    """The system clock, always timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock(Clock):
    """A clock tests and simulations move by hand, so a month runs in seconds."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment


def isoformat(moment: datetime) -> str:
    """The one textual form of an instant in Minqing: UTC, microseconds, trailing Z."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not allowed; attach a timezone")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"instant without a timezone: {text!r}")
    return moment.astimezone(timezone.utc)


SYSTEM_CLOCK = Clock()
