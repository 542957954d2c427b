"""The one way every service consumes events (DESIGN principles 1, 5, 6).

A broker message is only a wake-up call. The follower reads the ledger itself, in position order,
from its checkpoint, applies each event it handles, and stores the new checkpoint in the same
transaction as the effects. Hence: no event is skipped even if a message was lost or arrived before
its queue existed; redelivered and out-of-order messages change nothing; a crash anywhere leaves no
loss and no double effect.

Failures:
- transient (database away, a concurrency conflict): the batch is rolled back and retried with
  capped exponential backoff, for as long as it takes;
- anything else (a poison event, a bug): the failing event is isolated and retried `max_attempts`
  times with backoff, then *parked* — recorded in `consumer_parked` (and sent to the dead-letter
  queue) in the same transaction that moves the checkpoint past it — so the service keeps going.
  `minqing consumer parked` lists them; after a fix, `minqing consumer rebuild NAME` replays. When
  several events in a row fail the fault is taken to be systemic and nothing more is parked: the
  follower keeps retrying, and its lag on /health grows, until the cause is fixed.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Callable, Protocol

from prometheus_client import Counter, Gauge
from sqlalchemy import BigInteger, Column, Connection, MetaData, String, Table, Text, select
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError, ProgrammingError

from minqing import checkpoints
from minqing.clock import SYSTEM_CLOCK, Clock, isoformat
from minqing.db import write_transaction
from minqing.ledger import ConcurrencyError, Ledger, RecordedEvent

log = logging.getLogger("minqing.consumer")

APPLIED = Counter("minqing_consumer_applied_total", "Events applied by a projection", ["consumer"])
PARKED = Counter("minqing_consumer_parked_total", "Events parked after repeated failures", ["consumer"])
POSITION = Gauge("minqing_consumer_position", "Last ledger position a consumer applied", ["consumer"])

metadata_obj = MetaData()
parked_table = Table(
    "consumer_parked", metadata_obj,
    Column("consumer", String(100), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("type", String(100), nullable=False),
    Column("error", Text, nullable=False),
    Column("parked_at", String(32), nullable=False),
)


class Projection(Protocol):
    """What a service implements to follow the ledger."""
    name: str                                   # checkpoint name, unique per consumer
    event_types: frozenset[str] | None          # None: every event

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        """Apply one event using `conn` (the transaction that also stores the checkpoint)."""


# Trouble with the database itself (away, restarting, a table missing after a bad deploy) is not the
# event's fault: retry it for as long as it takes rather than park healthy events.
TRANSIENT = (OperationalError, InterfaceError, InternalError, ProgrammingError, ConcurrencyError)
SYSTEMIC_AFTER = 3     # this many events parked in a row means the fault is ours, not theirs


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class Follower:
    def __init__(self, ledger: Ledger, projection: Projection, *, batch: int | None = None, max_attempts: int = 4,
                 backoff: float = 0.2, clock: Clock = SYSTEM_CLOCK,
                 on_parked: Callable[[RecordedEvent, str], None] | None = None):
        self.ledger = ledger
        self.projection = projection
        # A projection that appends to the ledger holds the global append lock until it commits, so
        # it says how many events to take per transaction (`batch` attribute); others take 500.
        self.batch = batch or getattr(projection, "batch", 500)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.clock = clock
        self.on_parked = on_parked
        self._lock = threading.Lock()
        self._dirty = False
        self._parked_in_a_row = 0
        self._stopping = False
        self.position = 0

    def stop(self) -> None:
        """Make retry loops give up (the service is stopping); nothing is skipped by it."""
        self._stopping = True

    def handles(self, event_type: str) -> bool:
        types = self.projection.event_types
        return types is None or event_type in types

    def wake(self) -> None:
        """Catch up now, unless another greenthread is already doing it (it will see our events)."""
        self._dirty = True
        if not self._lock.acquire(blocking=False):
            return
        try:
            while self._dirty:
                self._dirty = False
                self._drain()
        finally:
            self._lock.release()

    def catch_up(self) -> int:
        """Apply everything recorded so far; return the position reached."""
        with self._lock:
            self._drain()
        return self.position

    def _drain(self) -> None:
        transient_delay = self.backoff
        while not self._stopping:
            try:
                more = self._apply_batch()
            except Exception as exc:
                if _is_transient(exc):
                    log.warning("%s: transient failure (%s); retrying in %.1fs", self.projection.name,
                                type(exc).__name__, transient_delay)
                    time.sleep(transient_delay)
                    transient_delay = min(transient_delay * 2, 5.0)
                    continue
                log.warning("%s: a batch failed (%s); isolating the failing event", self.projection.name,
                            type(exc).__name__)
                self._apply_one_by_one()
                continue
            transient_delay = self.backoff
            if not more:
                return

    def _apply_batch(self) -> bool:
        """Apply the next batch; True when there may be more to read right away.

        A projection that names its event types reads only those, up to the ledger head read first
        (everything at or below the head has committed: appends are serialised, principle 3), and
        its checkpoint moves to that head, past the events it has no use for."""
        name = self.projection.name
        types = self.projection.event_types
        with write_transaction(self.ledger.engine) as conn:
            position = checkpoints.load(conn, name, lock=True)
            if types is None:
                events = self.ledger.read_all(position, self.batch, conn=conn)
                more = len(events) == self.batch
                reached = events[-1].position if events else position
            else:
                head = self.ledger.head(conn=conn)[0]
                events = self.ledger.read_all(position, self.batch, types=types, upto=head, conn=conn)
                more = len(events) == self.batch
                reached = events[-1].position if more else head
            if reached <= position:
                self.position = position
                return False
            mine = [e for e in events if self.handles(e.type)]
            apply_batch = getattr(self.projection, "apply_batch", None)
            if apply_batch is not None:
                apply_batch(conn, mine)        # one projection, many events: it may batch its writes
            else:
                for event in mine:
                    self.projection.apply(conn, event)
            checkpoints.save(conn, name, reached)
        self._advanced(reached, len(events))
        return more

    def _apply_one_by_one(self) -> None:
        """Apply the next batch event by event; park the first one that keeps failing."""
        name = self.projection.name
        with write_transaction(self.ledger.engine) as conn:
            start = checkpoints.load(conn, name, lock=True)
        for event in self.ledger.read_all(start, self.batch):
            attempt, delay = 0, self.backoff
            while True:
                if self._stopping:
                    return
                attempt += 1
                try:
                    with write_transaction(self.ledger.engine) as conn:
                        if checkpoints.load(conn, name, lock=True) >= event.position:
                            break   # another instance applied it
                        if self.handles(event.type):
                            self.projection.apply(conn, event)
                        checkpoints.save(conn, name, event.position)
                    self._advanced(event.position, 1 if self.handles(event.type) else 0)
                    self._parked_in_a_row = 0
                    break
                except Exception as exc:
                    if _is_transient(exc):
                        attempt -= 1     # transient trouble does not count against the event
                    elif attempt >= self.max_attempts and self._parked_in_a_row < SYSTEMIC_AFTER:
                        self._park(event, exc)
                        return
                    elif attempt >= self.max_attempts:
                        log.error("%s: %d events in a row failed; refusing to park more, retrying position %d "
                                  "until the cause is fixed", self.projection.name, self._parked_in_a_row,
                                  event.position)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)

    def _park(self, event: RecordedEvent, exc: BaseException) -> None:
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]
        with write_transaction(self.ledger.engine) as conn:
            if checkpoints.load(conn, self.projection.name, lock=True) >= event.position:
                return     # another instance got past it meanwhile
            conn.execute(parked_table.insert().values(
                consumer=self.projection.name, position=event.position, event_id=event.event_id,
                type=event.type, error=error, parked_at=isoformat(self.clock.now())))
            checkpoints.save(conn, self.projection.name, event.position)
        self._parked_in_a_row += 1
        PARKED.labels(self.projection.name).inc()
        log.error("%s: parked event at position %d (%s) after %d attempts: %s", self.projection.name,
                  event.position, event.type, self.max_attempts, error)
        self._advanced(event.position, 0)
        if self.on_parked is not None:
            try:
                self.on_parked(event, error)
            except Exception:   # the parked row is the durable record; the DLQ copy is a courtesy
                log.exception("%s: could not copy parked event to the dead-letter queue", self.projection.name)

    def _advanced(self, position: int, applied: int) -> None:
        self.position = position
        POSITION.labels(self.projection.name).set(position)
        if applied:
            APPLIED.labels(self.projection.name).inc(applied)


def list_parked(ledger: Ledger, consumer: str | None = None) -> list[dict]:
    query = select(parked_table).order_by(parked_table.c.consumer, parked_table.c.position)
    if consumer:
        query = query.where(parked_table.c.consumer == consumer)
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def rebuild(ledger: Ledger, projection: Projection, drop: Callable[[Connection], None]) -> int:
    """Drop a projection's rows (via `drop`), reset its checkpoint, replay the whole ledger."""
    with write_transaction(ledger.engine) as conn:
        drop(conn)
        checkpoints.load(conn, projection.name)
        checkpoints.reset(conn, projection.name)
        conn.execute(parked_table.delete().where(parked_table.c.consumer == projection.name))
    return Follower(ledger, projection, batch=2000).catch_up()

