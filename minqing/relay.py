"""The relay: the ledger is the outbox (DESIGN principle 4).

It tails the ledger in position order and publishes each committed event to the topic exchange
`minqing.events` as a persistent CloudEvent, `mandatory`, with publisher confirms. Its checkpoint
moves only after the broker confirmed every event up to it, so a crash (even SIGKILL) can re-publish
the last unsaved batch (consumers absorb duplicates) but never skip an event.

An event the broker returns as unroutable (no queue bound for its routing key) was still confirmed:
no subscriber existed to lose it. It is counted (`minqing_relay_unroutable_total`) and logged. Minqing's
own services never depend on a message arriving — they read the ledger from their checkpoints.

Only one relay publishes at a time (a PostgreSQL advisory lock, or a lock file beside the SQLite
ledger); a second one waits as a standby.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import kombu
from prometheus_client import Counter, Gauge
from sqlalchemy import select, text

from minqing import checkpoints, cloudevents
from minqing.db import is_postgres, read_transaction, write_transaction
from minqing.ledger import Ledger

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


class Relay:
    def __init__(self, ledger: Ledger, amqp_uri: str, *, batch: int = 200, idle_sleep: float = 0.02):
        self.ledger = ledger
        self.amqp_uri = amqp_uri
        self.batch = batch
        self.idle_sleep = idle_sleep
        self._returned: list[str] = []

    def _on_return(self, exception, exchange, routing_key, message):
        self._returned.append(routing_key)

    def publish_pending(self, producer, exchange) -> int:
        """Publish everything after the checkpoint; return how many events were confirmed."""
        total = 0
        while True:
            with read_transaction(self.ledger.engine) as conn:
                position = conn.execute(select(checkpoints.checkpoints_table.c.position)
                                        .where(checkpoints.checkpoints_table.c.name == CHECKPOINT)).scalar_one()
            events = self.ledger.read_all(position, self.batch)
            if not events:
                return total
            for event in events:
                self._returned.clear()
                producer.publish(
                    cloudevents.to_cloudevent(event), exchange=exchange, routing_key=cloudevents.routing_key(event),
                    serializer="cloudevents", delivery_mode=2, mandatory=True, message_id=event.event_id,
                    retry=False)
                if self._returned:
                    UNROUTABLE.inc()
                    log.info("event at position %d (%s) had no subscriber queue", event.position,
                             cloudevents.routing_key(event))
                PUBLISHED.inc()
            with write_transaction(self.ledger.engine) as conn:
                if not checkpoints.advance(conn, CHECKPOINT, position, events[-1].position):
                    raise LostLeadership("another relay moved the checkpoint")
            POSITION.set(events[-1].position)
            total += len(events)

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
                with kombu.Connection(self.amqp_uri, transport_options={"confirm_publish": True},
                                      heartbeat=30, connect_timeout=5) as connection:
                    channel = connection.channel()
                    exchange = declare_topology(channel)
                    producer = kombu.Producer(channel, on_return=self._on_return)
                    log.info("relay connected to the broker")
                    backoff = 0.5
                    checked = time.monotonic()
                    while not stop.is_set():
                        if time.monotonic() - checked > 1.0:
                            if not still_leader():
                                raise LostLeadership("the leadership lock was lost")
                            checked = time.monotonic()
                        if self.publish_pending(producer, exchange) == 0:
                            self._idle(connection)
            except LostLeadership:
                raise
            except Exception as exc:   # broker or database away: nothing is advanced, so retry
                log.warning("relay interrupted (%s: %s); retrying in %.1fs", type(exc).__name__, exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _idle(self, connection) -> None:
        """Wait a moment while reading the socket, so the broker's heartbeats are seen and ours sent."""
        try:
            connection.drain_events(timeout=self.idle_sleep)
        except socket.timeout:
            pass
        connection.heartbeat_check()

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
