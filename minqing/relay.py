"""The relay: the ledger is the outbox (DESIGN principle 4).

It tails the ledger in position order and publishes each committed event to the topic exchange
`minqing.events` as a persistent CloudEvent, `mandatory`, with publisher confirms. Its checkpoint
moves only after the broker confirmed every event up to it, so a crash (even SIGKILL) can re-publish
the last unsaved batch (consumers absorb duplicates) but never skip an event.

An event the broker returns as unroutable (no queue bound for its routing key) was still confirmed:
no subscriber existed to lose it. It is counted (`minqing_relay_unroutable_total`) and logged. Minqing's
own services never depend on a message arriving — they read the ledger from their checkpoints.

Waking: on PostgreSQL the relay LISTENs on the channel the append function NOTIFYs (delivered only
when the append commits) and otherwise sleeps; it still looks every `idle_sleep` seconds (1 s) in
case a notification was missed, and on SQLite, which has no notifications, every `sqlite_poll` s.
Confirms are windowed: a batch is published without waiting, then the relay waits once for the
broker's acks of the whole batch; a nack or a timeout fails the batch (the checkpoint does not
move, so it is published again).

Only one relay publishes at a time (a PostgreSQL advisory lock, or a lock file beside the SQLite
ledger); a second one waits as a standby.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import select as selectmod
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import kombu
from prometheus_client import Counter, Gauge
from sqlalchemy import select, text

from minqing.logs import EVENTS, event_fields
from minqing import checkpoints, cloudevents
from minqing.db import is_postgres, read_transaction, write_transaction
from minqing.ledger import Ledger
from minqing.ledger_pg import NOTIFY_CHANNEL

log = logging.getLogger("minqing.relay")

PUBLISHED = Counter("minqing_relay_published_total", "Events published and confirmed by the broker")
UNROUTABLE = Counter("minqing_relay_unroutable_total", "Confirmed events no queue was bound for")
POSITION = Gauge("minqing_relay_position", "Last ledger position confirmed by the broker")

CHECKPOINT = "relay"
_ADVISORY_KEY = 0x6D696E71   # "minq"


def declare_topology(channel) -> kombu.Exchange:
    """The public exchange and the dead-letter exchange and queue, declared idempotently."""
    exchange = kombu.Exchange(cloudevents.EXCHANGE, type="topic", durable=True)
    exchange(channel).declare()
    dlx = kombu.Exchange(cloudevents.DEAD_LETTER_EXCHANGE, type="fanout", durable=True)
    dlx(channel).declare()
    kombu.Queue(cloudevents.DEAD_LETTER_QUEUE, exchange=dlx, durable=True)(channel).declare()
    return exchange


class LostLeadership(RuntimeError):
    pass


class NotConfirmed(RuntimeError):
    """The broker nacked a message, or did not confirm a batch in time."""


class Confirms:
    """Publisher confirms for one channel, waited for once per window instead of once per message.
    Delivery tags count the messages published on the channel since confirm.select, from 1."""

    def __init__(self, channel, timeout: float = 30.0):
        self.channel, self.timeout = channel, timeout
        self.published, self.unconfirmed, self.nacked = 0, set(), False
        channel.confirm_select()
        channel.events["basic_ack"].add(self._ack)
        channel.events["basic_nack"].add(self._nack)

    def published_one(self) -> None:
        self.published += 1
        self.unconfirmed.add(self.published)

    def _settle(self, tag: int, multiple: bool) -> None:
        if multiple:
            self.unconfirmed = {t for t in self.unconfirmed if t > tag}
        else:
            self.unconfirmed.discard(tag)

    def _ack(self, delivery_tag, multiple) -> None:
        self._settle(delivery_tag, multiple)

    def _nack(self, delivery_tag, multiple) -> None:
        self.nacked = True
        self._settle(delivery_tag, multiple)

    def wait(self, connection) -> None:
        """Until every message published so far is acked; NotConfirmed on a nack or timeout."""
        deadline = time.monotonic() + self.timeout
        while self.unconfirmed and not self.nacked:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NotConfirmed(f"{len(self.unconfirmed)} messages unconfirmed after {self.timeout}s")
            try:
                connection.drain_events(timeout=left)
            except socket.timeout:
                pass
        if self.nacked:
            raise NotConfirmed("the broker nacked a message")


class Relay:
    def __init__(self, ledger: Ledger, amqp_uri: str, *, batch: int = 200, idle_sleep: float = 1.0,
                 sqlite_poll: float = 0.25):
        self.ledger = ledger
        self.amqp_uri = amqp_uri
        self.batch = batch
        self.idle_sleep = idle_sleep       # PostgreSQL: the fallback poll behind LISTEN/NOTIFY
        self.sqlite_poll = sqlite_poll     # SQLite: the poll (no notifications there)
        self._returned: list[str] = []

    def _on_return(self, exception, exchange, routing_key, message):
        self._returned.append(routing_key)

    def publish_pending(self, producer, exchange, confirms: Confirms | None = None, connection=None) -> int:
        """Publish everything after the checkpoint; return how many events were confirmed."""
        total = 0
        position = None
        while True:
            # One read transaction per batch: the checkpoint is read once per call, then kept — each
            # batch moves it by compare-and-set from the position published from, so another relay
            # having moved it meanwhile still ends this one's leadership (LostLeadership below).
            with read_transaction(self.ledger.engine) as conn:
                if position is None:
                    position = conn.execute(select(checkpoints.checkpoints_table.c.position)
                                            .where(checkpoints.checkpoints_table.c.name == CHECKPOINT)).scalar_one()
                events = self.ledger.read_all(position, self.batch, conn=conn)
            if not events:
                return total
            self._returned.clear()
            for event in events:
                producer.publish(
                    cloudevents.to_cloudevent(event), exchange=exchange, routing_key=cloudevents.routing_key(event),
                    serializer="cloudevents", delivery_mode=2, mandatory=True, message_id=event.event_id,
                    retry=False)
                if confirms is not None:
                    confirms.published_one()
            if confirms is not None:
                confirms.wait(connection)      # the broker returns an unroutable message before acking it
            if self._returned:
                UNROUTABLE.inc(len(self._returned))
                log.info("%d events up to position %d had no subscriber queue (%s)", len(self._returned),
                         events[-1].position, ", ".join(sorted(set(self._returned))))
            PUBLISHED.inc(len(events))
            with write_transaction(self.ledger.engine) as conn:
                if not checkpoints.advance(conn, CHECKPOINT, position, events[-1].position):
                    raise LostLeadership("another relay moved the checkpoint")
            POSITION.set(events[-1].position)
            for event in events:
                EVENTS.info("published %s", event.type, extra=event_fields(event))
            total += len(events)
            position = events[-1].position
            if len(events) < self.batch:
                # all there was: what is appended from now on wakes the relay again (NOTIFY, or the
                # SQLite poll), so no second look now — it was two more transactions per wake-up
                return total

    def run(self, stop: threading.Event) -> None:
        with write_transaction(self.ledger.engine) as conn:
            checkpoints.load(conn, CHECKPOINT)          # create the row once, so reads need no write lock
        while not stop.is_set():
            with self._leadership(stop) as still_leader:
                if still_leader is None:
                    return
                try:
                    self._publish_while_leader(stop, still_leader)
                except LostLeadership as exc:
                    log.warning("relay stepping down: %s", exc)
                    stop.wait(1.0)

    def _publish_while_leader(self, stop: threading.Event, still_leader) -> None:
        log.info("relay active, publishing to %s", cloudevents.EXCHANGE)
        backoff = 0.5
        while not stop.is_set():
            try:
                with kombu.Connection(self.amqp_uri, heartbeat=30, connect_timeout=5) as connection, \
                        self._listener() as listener:
                    channel = connection.channel()
                    exchange = declare_topology(channel)
                    producer = kombu.Producer(channel, on_return=self._on_return)
                    confirms = Confirms(channel)
                    log.info("relay connected to the broker")
                    backoff = 0.5
                    checked = time.monotonic()
                    look = True
                    while not stop.is_set():
                        if time.monotonic() - checked > 1.0:
                            if not still_leader():
                                raise LostLeadership("the leadership lock was lost")
                            checked = time.monotonic()
                        if look:
                            self.publish_pending(producer, exchange, confirms, connection)
                            looked = time.monotonic()
                        # and a look at least every poll interval, however busy the broker's socket
                        look = self._idle(connection, listener) or time.monotonic() - looked >= (
                            self.sqlite_poll if listener is None else self.idle_sleep)
            except LostLeadership:
                raise
            except Exception as exc:   # broker or database away: nothing is advanced, so retry
                log.warning("relay interrupted (%s: %s); retrying in %.1fs", type(exc).__name__, exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    @contextlib.contextmanager
    def _listener(self):
        """On PostgreSQL, a connection of its own (taken out of the pool) that LISTENs for appends;
        None on SQLite. LISTEN comes before the first look at the ledger, so no commit is missed."""
        if not is_postgres(self.ledger.engine):
            yield None
            return
        raw = self.ledger.engine.raw_connection()
        pg = raw.driver_connection
        raw.detach()
        try:
            pg.autocommit = True
            pg.execute(f"LISTEN {NOTIFY_CHANNEL}")
            yield pg
        finally:
            pg.close()

    def _idle(self, connection, listener) -> bool:
        """Sleep until an append is notified (or the fallback poll is due), reading the broker's socket
        meanwhile so its heartbeats are seen and ours sent. True when the ledger is worth a look: an
        append was notified, or the poll is due. Only the broker's socket woke it (a heartbeat, a late
        confirm): False — publish_pending took everything there was when it returned, and what was
        appended since was notified (LISTEN came first), so a look now would find nothing."""
        amqp_sock = connection.connection.sock
        if listener is None:
            readable, _, _ = selectmod.select([amqp_sock], [], [], self.sqlite_poll)
            look = not readable
        else:
            readable, _, _ = selectmod.select([amqp_sock, listener.fileno()], [], [], self.idle_sleep)
            look = not readable
            if listener.fileno() in readable:
                listener.pgconn.consume_input()
                while listener.pgconn.notifies() is not None:
                    look = True               # one wake-up covers every append notified so far
        if amqp_sock in readable:
            try:
                connection.drain_events(timeout=0.01)
            except socket.timeout:
                pass
        connection.heartbeat_check()
        return look

    @contextlib.contextmanager
    def _leadership(self, stop: threading.Event) -> Iterator:
        """Yields a function telling whether we still lead, or None when stopped before leading."""
        engine = self.ledger.engine
        if is_postgres(engine):
            with engine.connect() as conn:
                while not stop.is_set():
                    if conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _ADVISORY_KEY}).scalar():
                        conn.commit()

                        def still_leader() -> bool:
                            try:
                                held = conn.execute(text(
                                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                    "AND pid = pg_backend_pid() AND objid = :k"), {"k": _ADVISORY_KEY}).scalar()
                                conn.commit()
                                return held > 0
                            except Exception:
                                return False
                        try:
                            yield still_leader
                        finally:
                            try:
                                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
                                conn.commit()
                            except Exception:
                                pass
                        return
                    conn.commit()
                    log.info("another relay is active; standing by")
                    stop.wait(2.0)
                yield None
            return
        lock_path = Path(engine.url.database or "minqing.db").with_suffix(".relay.lock")
        with open(lock_path, "a+") as handle:
            while not stop.is_set():
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("another relay is active; standing by")
                    stop.wait(2.0)
                    continue
                try:
                    yield lambda: True         # a flock is held until this process ends
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                return
            yield None


def lag(ledger: Ledger) -> dict:
    with read_transaction(ledger.engine) as conn:
        published = conn.execute(select(checkpoints.checkpoints_table.c.position)
                                 .where(checkpoints.checkpoints_table.c.name == CHECKPOINT)).scalar() or 0
        head, _ = ledger.head(conn=conn)
    return {"published_position": published, "head_position": head, "lag": head - published}
