"""Injected time (DESIGN principle 10): nothing in Minqing reads the wall clock directly.

`SYSTEM_CLOCK` is the one clock every process of the stack uses. Modules import the object itself,
so it is configured in place rather than replaced: in a demo or training deployment
(`MINQING_CLOCK=demo`, see minqing.democlock and docs/simulate.md) it follows the demo clock recorded
in the ledger; everywhere else it is the machine's UTC time.
"""
from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

CLOCK_SETTING = "MINQING_CLOCK"        # "demo" turns on the demo clock; unset or "system": real time


class TimeSource(Protocol):
    def now(self) -> datetime: ...


def real_now() -> datetime:
    """The machine's time: only clocks themselves (and the demo clock's anchor) may read it."""
    return datetime.now(timezone.utc)


class Clock:
    """The system clock, always timezone-aware UTC; in a demo deployment it follows the demo clock.

    The source is chosen on first use from the environment (so a process needs no start-up hook),
    or set explicitly with `follow()`.
    """

    def __init__(self, configure: Callable[[], TimeSource | None] | None = None):
        self._configure = configure
        self._source: TimeSource | None = None
        self._configured = configure is None
        self._lock = threading.Lock()

    def follow(self, source: TimeSource | None) -> None:
        """Take time from `source` from now on (None: the machine's time)."""
        with self._lock:
            self._source, self._configured = source, True

    @property
    def source(self) -> TimeSource | None:
        if not self._configured:
            with self._lock:
                if not self._configured:
                    self._source = self._configure() if self._configure else None
                    self._configured = True
        return self._source

    def now(self) -> datetime:
        source = self.source
        return real_now() if source is None else source.now()


class ManualClock(Clock):
    """A clock tests and simulations move by hand, so a month runs in seconds."""

    def __init__(self, start: datetime | None = None):
        super().__init__()
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")

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


def demo_clock_configured() -> bool:
    """Whether this deployment runs on the demo clock (a demo or training deployment)."""
    return os.environ.get(CLOCK_SETTING, "").strip().lower() == "demo"


def _from_environment() -> TimeSource | None:
    if not demo_clock_configured():
        return None
    from minqing.democlock import ledger_source      # the demo clock reads the ledger; imported only when on
    return ledger_source()


SYSTEM_CLOCK = Clock(_from_environment)
