"""The one way every service consumes events (DESIGN principles 1, 5, 6).

A broker message is only a wake-up call. The follower reads the ledger itself, in position order,
from its checkpoint, applies each event it handles, and stores the new checkpoint in the same
transaction as the effects. Hence: no event is skipped even if a message was lost or arrived before
its queue existed; redelivered and out-of-order messages change nothing; a crash anywhere leaves no
loss and no double effect.

Failures are of two kinds, told apart by `retry_in_place` (one place for the rule):

- **retried in place** — trouble with the database, not with the event: the connection lost or
  invalidated; PostgreSQL restarting, shutting down or failing over (SQLSTATE classes 08, 57, 58,
  `25006` read-only transaction); serialization failures and deadlocks (class 40); no resources
  (class 53); `55P03` lock not available; a schema or permission not (yet) there after a deploy
  (`42P01`, `42703`, `42883`, `42704`, `3F000`, `42501`, SQLite "no such table/column") — these fail
  every event alike, so parking would only move the whole ledger aside; SQLite busy, locked, I/O,
  full or cannot-open; `ConcurrencyError`. The batch is rolled back and retried with capped backoff
  for as long as it takes; the follower reports itself `held` on /health once it has retried the
  same place for `stuck_after` seconds.
- **everything else parks** — the event's fault or a bug it alone triggers: psycopg's `DataError`
  (a NUL in a text field arrives as `sqlalchemy.exc.DataError`, raised by psycopg before anything
  is sent, with no SQLSTATE), integrity violations, `54000` program limit exceeded (an index row
  too large), every other `ProgrammingError`/`InternalError`/`OperationalError` SQLSTATE, SQLite
  binding and integrity errors, and any non-database exception. The event is retried
  `max_attempts` times with backoff, then *parked*: recorded in `consumer_parked` (and copied to the
  dead-letter queue) in the same transaction that moves the checkpoint past it.

**A parked event holds back its own stream, and nothing else.** Every later event of that stream
the projection handles is *held*: recorded in `consumer_parked` behind the parked position, not
applied, so a stream's events are never applied out of order. Other streams go on. There is no
"systemic" limit: a bug that fails every event parks every event, /health says so, and after the
fix `minqing consumer retry NAME --all` replays them (see `retry`, docs/operations.md).

`stop()` interrupts every backoff wait at once (an Event, not sleep), so a service stops promptly
however stuck its follower is.
"""
from __future__ import annotations

import logging
import threading
import traceback
from datetime import datetime
from typing import Callable, Protocol

from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, delete, exists, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from minqing.logs import EVENTS, about, event_fields
from minqing import checkpoints, parking
from minqing.clock import SYSTEM_CLOCK, Clock, isoformat
from minqing.db import is_postgres, write_transaction
from minqing.ledger import ConcurrencyError, Ledger, RecordedEvent, head_table
from minqing.parking import list_parked, parked_table  # noqa: F401  (the consumer's public names)

log = logging.getLogger("minqing.consumer")

APPLIED = Counter("minqing_consumer_applied_total", "Events applied by a projection", ["consumer"])
SET_ASIDE_TOTAL = Counter("minqing_consumer_set_aside_total", "Events parked (failed) or held (behind a parked "
                          "event of their stream)", ["consumer", "kind"])
POSITION = Gauge("minqing_consumer_position", "Last ledger position a consumer applied", ["consumer"])


class Projection(Protocol):
    """What a service implements to follow the ledger."""
    name: str                                   # checkpoint name, unique per consumer
    event_types: frozenset[str] | None          # None: every event

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        """Apply one event using `conn` (the transaction that also stores the checkpoint)."""


_PG_RETRY_CLASSES = {"08", "40", "53", "57", "58"}
_PG_RETRY_STATES = {"25006", "55P03", "42P01", "42703", "42883", "42704", "3F000", "42501"}
_SQLITE_RETRY_CODES = {5, 6, 7, 10, 13, 14, 15}      # BUSY LOCKED NOMEM IOERR FULL CANTOPEN PROTOCOL
_SQLITE_SCHEMA = ("no such table", "no such column")


def retry_in_place(exc: BaseException) -> bool:
    """True when the database, not the event, is at fault: retry without parking (module docstring)."""
    if isinstance(exc, ConcurrencyError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if type(orig).__module__ == "sqlite3":
        code = getattr(orig, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF in _SQLITE_RETRY_CODES) or str(orig).startswith(_SQLITE_SCHEMA)
    state = getattr(orig, "sqlstate", None)
    if state:
        return state[:2] in _PG_RETRY_CLASSES or state in _PG_RETRY_STATES
    # psycopg raises these without a SQLSTATE when the server is unreachable or the connection broke
    return isinstance(exc, (OperationalError, InterfaceError))


def describe(exc: BaseException) -> str:
    """What went wrong, in one line: the driver's message without the statement and its parameters."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = "".join(traceback.format_exception_only(type(inner), inner)).strip().splitlines()
    return parking.clean_error(text[-1] if len(text) == 1 else " ".join(text[:1] + text[-1:]))


class Follower:
    def __init__(self, ledger: Ledger, projection: Projection, *, batch: int | None = None, max_attempts: int = 4,
                 backoff: float = 0.2, clock: Clock = SYSTEM_CLOCK, stuck_after: float = 60.0,
                 on_parked: Callable[[RecordedEvent, str], None] | None = None):
        self.ledger = ledger
        self.projection = projection
        # A projection that appends to the ledger holds the global append lock until it commits, so
        # it says how many events to take per transaction (`batch` attribute); others take 500.
        self.batch = batch or getattr(projection, "batch", 500)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.clock = clock
        self.stuck_after = stuck_after
        self.on_parked = on_parked
        self._lock = threading.Lock()
        self._dirty = False
        self._stop = threading.Event()
        self._retrying: tuple[int, datetime] | None = None     # (after position, since)
        self.position = 0
        # how far the batch under way will take the checkpoint: a broker message for an event at or
        # below it needs no wake-up (the event is being applied; the wake-up would only find nothing)
        self.reading = 0

    @property
    def name(self) -> str:
        return self.projection.name

    def stop(self) -> None:
        """Make every retry and backoff give up now (the service is stopping); nothing is skipped."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def handles(self, event_type: str) -> bool:
        types = self.projection.event_types
        return types is None or event_type in types

    def wake(self) -> None:
        """Catch up now, unless another thread is already doing it (it will see our events)."""
        self._dirty = True
        if not self._lock.acquire(blocking=False):
            return
        try:
            while self._dirty and not self.stopping:
                self._dirty = False
                self._drain()
        finally:
            self._lock.release()

    def catch_up(self) -> int:
        """Apply everything recorded so far (or until stopped); return the position reached."""
        with self._lock:
            self._drain()
        return self.position

    def retrying(self) -> dict | None:
        """Where the follower has been retrying in place, if it has been for `stuck_after` seconds."""
        current = self._retrying
        if current is None:
            return None
        seconds = (self.clock.now() - current[1]).total_seconds()
        if seconds < self.stuck_after:
            return None
        return {"after_position": current[0], "since": isoformat(current[1]), "seconds": round(seconds, 1)}

    def _waiting(self, exc: BaseException) -> None:
        if self._retrying is None or self._retrying[0] != self.position:
            self._retrying = (self.position, self.clock.now())

    def _drain(self) -> None:
        delay = self.backoff
        while not self.stopping:
            try:
                more = self._apply_batch()
            except Exception as exc:
                if retry_in_place(exc):
                    self._waiting(exc)
                    log.warning("%s: %s; retrying in %.1fs", self.name, describe(exc), delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                log.warning("%s: a batch failed (%s); isolating the failing event", self.name, type(exc).__name__)
                self._apply_one_by_one()
                continue
            self._retrying = None
            delay = self.backoff
            if not more:
                return

    def _apply_batch(self) -> bool:
        """Apply the next batch; True when there may be more to read right away.

        A projection that names its event types reads only those, up to the ledger head read first
        (everything at or below the head has committed: appends are serialised, principle 3), and
        its checkpoint moves to that head, past the events it has no use for. Events of a blocked
        stream are held in the same transaction."""
        name = self.name
        types = self.projection.event_types
        with write_transaction(self.ledger.engine) as conn:
            position, head, any_set_aside = self._batch_start(conn)
            if types is None:
                events = self.ledger.read_all(position, self.batch, conn=conn)
                more = len(events) == self.batch
                reached = events[-1].position if events else position
            else:
                events = self.ledger.read_all(position, self.batch, types=types, upto=head, conn=conn)
                more = len(events) == self.batch
                reached = events[-1].position if more else head
            if reached <= position:
                self.position = position
                return False
            self.reading = max(self.reading, reached)
            mine = [e for e in events if self.handles(e.type)]
            blocked = parking.blocked_streams(conn, name, {e.stream for e in mine}) if mine and any_set_aside else {}
            held = [e for e in mine if e.stream in blocked]
            mine = [e for e in mine if e.stream not in blocked]
            apply_batch = getattr(self.projection, "apply_batch", None)
            if apply_batch is not None:
                apply_batch(conn, mine)        # one projection, many events: it may batch its writes
            else:
                for event in mine:
                    self.projection.apply(conn, event)
            for event in held:
                self._hold(conn, event, blocked[event.stream])
            checkpoints.save(conn, name, reached)
        self._advanced(reached, len(mine))
        self._held(held)
        for event in mine:
            EVENTS.info("%s applied %s", name, event.type, extra={**event_fields(event), "consumer": name})
        return more

    def _batch_start(self, conn: Connection) -> tuple[int, int, bool]:
        """(checkpoint, ledger head, anything of this reader parked or held) in one statement, the
        checkpoint row locked until commit (two instances of one reader never apply the same events).

        One statement instead of three because every batch of every follower starts here: on the
        whole stack that was ~34 of the ~320 statements a report costs (bench/statements.py). The
        head may come from the statement's snapshot, taken before a wait for the lock: then it is at
        most older than the head, and the batch does less, never more (everything at or below any
        head read has committed: appends are serialised, principle 3)."""
        cp = checkpoints.checkpoints_table
        query = select(cp.c.position,
                       select(head_table.c.position).where(head_table.c.id == 1).scalar_subquery(),
                       exists().where(parked_table.c.consumer == cp.c.name)).where(cp.c.name == self.name)
        if is_postgres(conn.engine):
            query = query.with_for_update(of=cp)
        row = conn.execute(query).first()
        if row is None:         # the reader's first batch: the row is made, and the head read apart
            return checkpoints.load(conn, self.name, lock=True), self.ledger.head(conn=conn)[0], True
        return row[0], row[1] or 0, bool(row[2])

    def _apply_one_by_one(self) -> None:
        """Apply the next batch event by event; park what keeps failing, hold what is behind it."""
        with write_transaction(self.ledger.engine) as conn:
            start = checkpoints.load(conn, self.name, lock=True)
        for event in self.ledger.read_all(start, self.batch, types=self.projection.event_types):
            with about(**event_fields(event), consumer=self.name):    # its warnings name the case
                if not self._apply_isolated(event):
                    return

    def _apply_isolated(self, event: RecordedEvent) -> bool:
        """Apply, hold or park one event; False when stopped first."""
        name = self.name
        attempt, delay = 0, self.backoff
        while not self.stopping:
            try:
                if attempt >= self.max_attempts:
                    self._park(event, failure)
                    return True
                held = False
                with write_transaction(self.ledger.engine) as conn:
                    if checkpoints.load(conn, name, lock=True) >= event.position:
                        return True     # another instance applied it
                    if self.handles(event.type):
                        behind = parking.blocked_streams(conn, name, {event.stream}).get(event.stream)
                        if behind is not None:
                            self._hold(conn, event, behind)
                            held = True
                        else:
                            self.projection.apply(conn, event)
                    checkpoints.save(conn, name, event.position)
                self._retrying = None
                self._advanced(event.position, 1 if self.handles(event.type) and not held else 0)
                self._held([event] if held else [])
                if self.handles(event.type) and not held:
                    EVENTS.info("%s applied %s", name, event.type)
                return True
            except Exception as exc:
                if retry_in_place(exc):
                    self._waiting(exc)     # not the event's fault: does not count against it
                else:
                    attempt += 1
                    failure = exc
                    log.warning("%s: position %d failed (attempt %d of %d): %s", name, event.position, attempt,
                                self.max_attempts, describe(exc))
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)
        return False

    def _hold(self, conn: Connection, event: RecordedEvent, behind: int) -> None:
        parking.set_aside(conn, self.name, event, error=f"held behind position {behind} of its stream",
                          at=isoformat(self.clock.now()), held_behind=behind)

    def _held(self, events: list[RecordedEvent]) -> None:
        for event in events:
            SET_ASIDE_TOTAL.labels(self.name, "held").inc()
            log.warning("%s: held position %d (%s): an earlier event of its stream is parked", self.name,
                        event.position, event.type)
        if events:
            parking.summary(self.ledger.engine, self.name)

    def _park(self, event: RecordedEvent, exc: BaseException) -> None:
        error = describe(exc)
        with write_transaction(self.ledger.engine) as conn:
            if checkpoints.load(conn, self.name, lock=True) >= event.position:
                return     # another instance got past it meanwhile
            # an earlier event of the stream may have been parked since: then this one is held too
            behind = parking.blocked_streams(conn, self.name, {event.stream}).get(event.stream)
            parking.set_aside(conn, self.name, event, error=error, at=isoformat(self.clock.now()), held_behind=behind)
            checkpoints.save(conn, self.name, event.position)
        SET_ASIDE_TOTAL.labels(self.name, "parked").inc()
        log.error("%s: parked position %d (%s) after %d attempts; later events of its stream are held: %s",
                  self.name, event.position, event.type, self.max_attempts, error)
        self._retrying = None
        self._advanced(event.position, 0)
        parking.summary(self.ledger.engine, self.name)
        if self.on_parked is not None:
            try:
                self.on_parked(event, error)
            except Exception:   # the parked row is the durable record; the DLQ copy is a courtesy
                log.exception("%s: could not copy parked event to the dead-letter queue", self.name)

    def _advanced(self, position: int, applied: int) -> None:
        self.position = position
        POSITION.labels(self.name).set(position)
        if applied:
            APPLIED.labels(self.name).inc(applied)


def rebuild(ledger: Ledger, projection: Projection, drop: Callable[[Connection], None]) -> int:
    """Drop a projection's rows (via `drop`), reset its checkpoint, replay the whole ledger.

    On PostgreSQL a projection with a `replayer()` is replayed by `minqing.replay` (a reader thread,
    slim events, large transactions) up to the head; a follower then takes the checkpoint on from
    wherever that stopped — the head, or the batch before a failure, which the follower retries,
    parks or holds by its own rules."""
    with write_transaction(ledger.engine) as conn:
        drop(conn)
        checkpoints.load(conn, projection.name)
        checkpoints.reset(conn, projection.name)
        conn.execute(parked_table.delete().where(parked_table.c.consumer == projection.name))
    make_replayer = getattr(projection, "replayer", None)
    if make_replayer is not None and is_postgres(ledger.engine):
        from minqing import replay

        def progress(position: int, applied: int) -> None:
            POSITION.labels(projection.name).set(position)
            APPLIED.labels(projection.name).inc(applied)
            report = getattr(ledger, "replayed", None)     # progress.ReadProgress, in the CLI
            if report is not None:
                report(position)
        try:
            replay.run(ledger, projection.name, projection.event_types, make_replayer(), on_progress=progress)
        except Exception as exc:
            log.warning("%s: the fast replay stopped (%s); a follower goes on from its checkpoint",
                        projection.name, describe(exc))
    return Follower(ledger, projection, batch=2000).catch_up()


def retry(ledger: Ledger, projection: Projection, *, position: int | None = None,
          clock: Clock = SYSTEM_CLOCK) -> list[dict]:
    """Apply again what `projection` parked and held, stream by stream, each stream in position order.

    With `position`, only the stream of that parked or held event; otherwise every stream. Each
    event is applied in its own transaction that also deletes its row, so a retry interrupted
    anywhere leaves no double effect; the checkpoint row is locked like the follower's, so a running
    service may keep following meanwhile. The first event of a stream that fails again keeps its row
    with the new error (now parked, if it was only held) and stops its stream; later rows of that
    stream are held behind it. Returns one dict per event tried: position, stream, outcome, error.
    """
    name = projection.name
    rows = parking.list_parked(ledger, name)
    if position is not None:
        rows = [r for r in rows if r["position"] == position]
        if not rows:
            raise LookupError(f"{name} has no parked or held event at position {position}")
    streams = list(dict.fromkeys(r["stream"] for r in rows))
    report: list[dict] = []
    for stream in streams:
        report += _retry_stream(ledger, projection, stream, clock)
    parking.summary(ledger.engine, name)
    return report


def _retry_stream(ledger: Ledger, projection: Projection, stream: str, clock: Clock) -> list[dict]:
    name = projection.name
    where = (parked_table.c.consumer == name, parked_table.c.stream == stream)
    report: list[dict] = []
    at = None
    while True:
        try:
            with write_transaction(ledger.engine) as conn:
                checkpoints.load(conn, name, lock=True)
                row = conn.execute(select(parked_table.c.position).where(*where)
                                   .order_by(parked_table.c.position).limit(1)).first()
                if row is None:
                    return report
                at = row.position
                event = ledger.read_all(at - 1, 1, conn=conn)[0]
                projection.apply(conn, event)
                conn.execute(delete(parked_table).where(*where, parked_table.c.position == at))
            report.append({"position": at, "stream": stream, "outcome": "applied"})
            log.info("%s: retried position %d: applied", name, at)
        except Exception as exc:
            error = describe(exc)
            report.append({"position": at, "stream": stream, "outcome": "failed", "error": error})
            log.error("%s: retried position %d: failed again: %s", name, at, error)
            if at is not None and not retry_in_place(exc):
                with write_transaction(ledger.engine) as conn:
                    conn.execute(update(parked_table).where(*where, parked_table.c.position == at)
                                 .values(error=parking.clean_error(error), held_behind=None,
                                         parked_at=isoformat(clock.now())))
                    conn.execute(update(parked_table).where(*where, parked_table.c.position > at)
                                 .values(held_behind=at, error=f"held behind position {at} of its stream"))
            return report
