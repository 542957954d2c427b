"""The demo clock: a running stack on a clock that runs faster than real time, or that an admin moves
forward (issue #17.1) — only in a demo or training deployment (`MINQING_CLOCK=demo`).

The clock is recorded in the ledger, on stream `system-clock`, so replay and audit stay exact and
every process (relay, the four services, the gateway, the CLI) follows the same time:

- `clock.set` and `clock.advanced` each carry an anchor: the demo instant `demo_at` that held at the
  real instant `real_at`, and the `rate` at which demo time runs from there
  (demo now = demo_at + (real now − real_at) × rate). The latest event is the clock.
- Each process reads the latest anchor, caches it and reads again about every second
  (`REFRESH_SECONDS`), so an advance reaches every timer, deadline, quiet hour and follow-up within a
  second or two. A process never lets its own reading go backwards.
- The clock only moves forward: `set` refuses an instant before the current demo time.

`minqing run` writes the first anchor from `MINQING_CLOCK_START` / `MINQING_CLOCK_RATE` (see
`start`). Outside a demo deployment none of this is imported, and `minqing clock advance` refuses.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from minqing.clock import CLOCK_SETTING, demo_clock_configured, isoformat, parse_instant, real_now

log = logging.getLogger("minqing.clock")

STREAM = "system-clock"
SYSTEM_COUNTY = "system"          # the metadata county of deployment-wide events
START_SETTING = "MINQING_CLOCK_START"
RATE_SETTING = "MINQING_CLOCK_RATE"
REFRESH_SECONDS = 0.5
MAX_RATE = 100_000.0


class DemoClockError(Exception):
    """A demo-clock operation that is not allowed (not a demo deployment, or backwards)."""


@dataclass(frozen=True)
class Anchor:
    demo_at: datetime      # the demo instant …
    real_at: datetime      # … that held at this real instant
    rate: float            # demo seconds per real second from there

    def at(self, real: datetime) -> datetime:
        return self.demo_at + (real - self.real_at) * self.rate


def anchor_of(data: dict) -> Anchor:
    return Anchor(parse_instant(data["demo_at"]), parse_instant(data["real_at"]), float(data["rate"]))


# ---- configuration --------------------------------------------------------------------------------

def require_demo() -> None:
    if not demo_clock_configured():
        raise DemoClockError(f"the clock can only be moved in a demo or training deployment "
                             f"({CLOCK_SETTING}=demo); this deployment runs on real time")


def configured_start() -> datetime | None:
    raw = os.environ.get(START_SETTING, "").strip()
    if not raw:
        return None
    try:
        return parse_instant(raw)
    except ValueError:
        raise DemoClockError(f"{START_SETTING} must be an ISO-8601 instant with a zone "
                             f"(e.g. 2026-11-02T08:00+08:00), got {raw!r}") from None


def configured_rate() -> float:
    raw = os.environ.get(RATE_SETTING, "").strip()
    return parse_rate(raw, RATE_SETTING) if raw else 1.0


def parse_rate(raw: str, name: str = "rate") -> float:
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0 <= rate <= MAX_RATE:
        raise DemoClockError(f"{name} must be a number of demo seconds per real second between 0 and "
                             f"{MAX_RATE:g}, got {raw!r}")
    return rate


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")


def parse_duration(text: str) -> timedelta:
    """'3d', '12h', '1d12h', '90m', '30s' → a positive timedelta."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(f"{n}{u}" for n, u in parts) != compact:
        raise DemoClockError(f"not a duration: {text!r} (use e.g. 3d, 12h, 1d12h, 90m, 30s)")
    unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    delta = sum((timedelta(**{unit[u]: float(n)}) for n, u in parts), timedelta())
    if delta <= timedelta(0):
        raise DemoClockError(f"the clock only moves forward: {text!r} is not a positive duration")
    return delta


# ---- reading: the time source every process follows ------------------------------------------------

def read_anchor(engine) -> tuple[Anchor | None, int]:
    """The latest recorded anchor and the stream's version (0: none yet)."""
    import json

    from sqlalchemy import select

    from minqing.db import read_transaction
    from minqing.ledger import events_table
    query = (select(events_table.c.version, events_table.c.data).where(events_table.c.stream == STREAM)
             .order_by(events_table.c.version.desc()).limit(1))
    with read_transaction(engine) as conn:
        row = conn.execute(query).first()
    return (anchor_of(json.loads(row.data)), row.version) if row else (None, 0)


class DemoClock:
    """A time source that follows the latest anchor, re-read every `refresh` seconds."""

    def __init__(self, read: Callable[[], Anchor | None], fallback: Anchor, *, refresh: float = REFRESH_SECONDS,
                 real: Callable[[], datetime] = real_now, monotonic: Callable[[], float] = time.monotonic):
        self._read, self._real, self._monotonic, self._refresh = read, real, monotonic, refresh
        self._anchor = fallback
        self._read_at: float | None = None
        self._last: datetime | None = None
        self._refreshing = False
        self._lock = threading.Lock()

    def refresh(self) -> None:
        try:
            anchor = self._read()
        except Exception as exc:     # the database is away: keep running on the anchor we have
            log.warning("demo clock: could not read the clock from the ledger (%s); keeping the last anchor",
                        type(exc).__name__)
            anchor = None
        with self._lock:
            if anchor is not None:
                self._anchor = anchor
            self._read_at = self._monotonic()

    def now(self) -> datetime:
        stale = self._read_at is None or self._monotonic() - self._read_at >= self._refresh
        if stale and not self._refreshing:        # one reader at a time; the others use the cached anchor
            self._refreshing = True
            try:
                self.refresh()
            finally:
                self._refreshing = False
        with self._lock:
            moment = self._anchor.at(self._real())
            if self._last is not None and moment < self._last:
                moment = self._last          # never backwards, even when an anchor arrives late
            self._last = moment
            return moment


def ledger_source() -> DemoClock:
    """The demo clock of this process, reading the ledger of MINQING_DATABASE_URL."""
    from minqing import config
    from minqing.db import make_engine
    engine = make_engine(config.load().database_url, pool_size=1)
    started = real_now()
    fallback = Anchor(configured_start() or started, started, configured_rate())
    return DemoClock(lambda: read_anchor(engine)[0], fallback)


# ---- writing: set and advance, recorded in the ledger ----------------------------------------------

def _append(ledger, event_type: str, data: dict, version: int, actor: str):
    from minqing.ledger import Metadata, NewEvent
    event = NewEvent(event_type, data, Metadata(actor=actor, county=SYSTEM_COUNTY))
    return ledger.append(STREAM, [event], expected_version=version)[0]


def current(ledger, real: datetime | None = None) -> tuple[datetime, Anchor | None]:
    """The demo time now by the recorded anchor (the real time when none is recorded yet)."""
    anchor, _ = read_anchor(ledger.engine)
    real = real or real_now()
    return (anchor.at(real) if anchor else real), anchor


def set_clock(ledger, moment: datetime, *, rate: float | None = None, actor: str = "admin:cli"):
    """Record `clock.set`: demo time is `moment` from now on (never earlier than it is already)."""
    from minqing.ledger import ConcurrencyError
    require_demo()
    for _ in range(5):
        anchor, version = read_anchor(ledger.engine)
        real = real_now()
        if anchor is not None and moment < anchor.at(real) - timedelta(seconds=1):
            raise DemoClockError(f"the demo clock only moves forward: it is already {isoformat(anchor.at(real))}, "
                                 f"after {isoformat(moment)}")
        rate = anchor.rate if rate is None and anchor else (1.0 if rate is None else rate)
        data = {"demo_at": isoformat(moment), "real_at": isoformat(real), "rate": float(rate),
                "previous": isoformat(anchor.at(real)) if anchor else None}
        try:
            return _append(ledger, "clock.set", data, version, actor)
        except ConcurrencyError:
            continue
    raise DemoClockError("the clock kept changing under us; try again")


def advance(ledger, by: timedelta, *, actor: str = "admin:cli"):
    """Record `clock.advanced`: demo time jumps forward by `by` and runs on at the same rate."""
    from minqing.ledger import ConcurrencyError
    require_demo()
    if by <= timedelta(0):
        raise DemoClockError("the clock only moves forward")
    for _ in range(5):
        anchor, version = read_anchor(ledger.engine)
        real = real_now()
        before = anchor.at(real) if anchor else real
        data = {"previous": isoformat(before), "demo_at": isoformat(before + by), "real_at": isoformat(real),
                "rate": float(anchor.rate if anchor else configured_rate()), "by_seconds": by.total_seconds()}
        try:
            return _append(ledger, "clock.advanced", data, version, actor)
        except ConcurrencyError:
            continue
    raise DemoClockError("the clock kept changing under us; try again")


def start(ledger, *, actor: str = "admin:minqing-run") -> str | None:
    """At `minqing run`: make sure the demo clock has an anchor, from MINQING_CLOCK_START/RATE.

    A stack restarted on the same ledger keeps its clock (it never goes back); a later start or
    another rate is recorded as a new `clock.set`. Returns a line to print, or None outside a demo.
    """
    if not demo_clock_configured():
        return None
    wanted, rate = configured_start(), configured_rate()
    now, anchor = current(ledger)
    if anchor is None or (wanted is not None and wanted > now) or rate != anchor.rate:
        target = wanted if wanted is not None and (anchor is None or wanted > now) else now
        set_clock(ledger, target, rate=rate, actor=actor)
        now = target
    return f"demo clock: {shown(now)} ({isoformat(now)}), running at {rate:g}× (minqing clock advance 3d moves it on)"


def shown(moment: datetime, zone: str | None = None) -> str:
    """A demo instant as a person reads it (issue #18.1): `2026-12-02 02:00:00 CST Asia/Shanghai`. The
    stack's clock belongs to no county; the sample counties' zone (the default) is what people read."""
    from zoneinfo import ZoneInfo

    from minqing.localtime import DEFAULT_ZONE
    zone = zone or DEFAULT_ZONE
    return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M:%S %Z} {zone}"
