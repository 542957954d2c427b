"""What every nameko service of Minqing is built from: the ledger as a dependency, a follower that
keeps the service's projections up to date, the broker wake-up, the dead-letter queue and /health.

A service's queue `minqing.<service>` is durable and bound to `minqing.events` with the routing keys
of the event types it follows. A message only wakes the follower (see minqing.consumer); a message
that is not a Minqing CloudEvent is copied to the dead-letter queue with the reason and acked. No
message is ever acked away unhandled: if handling one raises anything at all (the dead-letter copy
failing included), the entrypoint rejects it without requeue, and the queue's dead-letter exchange
keeps it. The follower runs in one managed thread of its own, never in a message handler, so a
stuck follower cannot keep nameko's workers (and with them the service's stop) waiting.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Iterable

import kombu
from kombu import Exchange, Queue, binding
from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer, QueueConsumer
from sqlalchemy import MetaData

from minqing import access, checkpoints, cloudevents, consumer, ledger as ledger_mod, parking, vault as vault_mod
from minqing import ledger_listen
from minqing.config import follow_seconds
from minqing.clock import SYSTEM_CLOCK
from minqing.db import make_engine
from minqing.ledger import Ledger, RecordedEvent

log = logging.getLogger("minqing.service")

EVENTS_EXCHANGE = Exchange(cloudevents.EXCHANGE, type="topic", durable=True)
DLX = Exchange(cloudevents.DEAD_LETTER_EXCHANGE, type="fanout", durable=True)


class _EventQueueConsumer(QueueConsumer):
    """nameko's queue consumer, but a body kombu cannot decode (not JSON, a content type we do not
    accept) is rejected — so the queue's dead-letter exchange keeps it — instead of being logged in
    full (it may hold personal data) and acked away."""

    def on_decode_error(self, message, exc):
        log.warning("undecodable message (%s, content type %r) sent to the dead-letter queue",
                    type(exc).__name__, message.content_type)
        message.reject(requeue=False)


class _EventConsumer(Consumer):
    queue_consumer = _EventQueueConsumer()

    def handle_message_processed(self, message, result=None, exc_info=None):
        """nameko acks a message whose handler raised (or requeues it, to loop hot): reject it instead,
        so the queue's dead-letter exchange keeps it."""
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            return
        log.error("a message handler raised %s; the message goes to the dead-letter queue", exc_info[0].__name__)
        if message.channel.connection:
            try:
                message.reject(requeue=False)
            except ConnectionError:   # the broker reclaims an unacknowledged message anyway
                pass


consume_events = _EventConsumer.decorator


def service_queue(service: str, event_types: Iterable[str] | None) -> Queue:
    keys = ["#"] if event_types is None else [f"*.{t}" for t in sorted(event_types)]
    return Queue(f"minqing.{service}", bindings=[binding(EVENTS_EXCHANGE, routing_key=k) for k in keys],
                 durable=True, queue_arguments={"x-dead-letter-exchange": cloudevents.DEAD_LETTER_EXCHANGE})


def create_tables(engine, *metadatas: MetaData) -> None:
    """For tests and benches: a throwaway database built from the models (and any extra `metadatas`),
    stamped at the migrations' head as Alembic's cookbook does for a fresh database. The production
    path never uses it: processes require a migrated database (minqing.schema)."""
    from minqing import schema
    ledger_mod.create_schema(engine)
    for md in (checkpoints.metadata_obj, access.metadata_obj, *metadatas):
        md.create_all(engine)
    parking.create_schema(engine)
    schema.stamp_fresh(engine)


class LedgerProvider(DependencyProvider):
    """The ledger (and its engine) for one service container. Its tables come from the migrations:
    a database older than the code stops the service (minqing.schema.require_current)."""

    def __init__(self, *metadatas: MetaData):
        self.metadatas = metadatas
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()

    @property
    def ledger(self) -> Ledger:
        """Built by whichever extension needs it first: nameko sets extensions up concurrently."""
        with self._lock:
            if self._ledger is None:
                from minqing import schema
                engine = make_engine(self.container.config["DATABASE_URL"])
                schema.require_current(engine, "this service")
                self._ledger = Ledger(engine, SYSTEM_CLOCK)
            return self._ledger

    def setup(self):
        self.ledger

    def stop(self):
        if self._ledger is not None:
            self._ledger.engine.dispose()

    def get_dependency(self, worker_ctx):
        return self.ledger


class VaultProvider(DependencyProvider):
    def setup(self):
        from pathlib import Path
        config = self.container.config
        keys = config.get("VAULT_KEYS") or vault_mod.load_keys(Path(config["VAULT_KEY_FILE"]), create=True)
        self.vault = vault_mod.Vault(keys)

    def get_dependency(self, worker_ctx):
        return self.vault


class DeadLetters(DependencyProvider):
    """Copies rejected messages and parked events to `minqing.dead-letter`, with the reason."""

    def setup(self):
        self.amqp_uri = self.container.config["AMQP_URI"]

    def send(self, body: bytes | str | dict, reason: str, consumer_name: str) -> None:
        if isinstance(body, dict):
            body = json.dumps(body, ensure_ascii=False)
        with kombu.Connection(self.amqp_uri, transport_options={"confirm_publish": True}, connect_timeout=5) as conn:
            producer = conn.Producer()
            producer.publish(body, exchange=DLX, routing_key="dead", declare=[DLX], delivery_mode=2,
                             content_type="application/octet-stream" if isinstance(body, bytes) else "application/json",
                             content_encoding="binary" if isinstance(body, bytes) else "utf-8",
                             headers={"x-minqing-consumer": consumer_name, "x-minqing-reason": reason[:1000]})

    def get_dependency(self, worker_ctx):
        return self


SUMMARY_SECONDS = 15.0     # how stale the parked gauge may be after another process changed the rows


class Following(DependencyProvider):
    """Keeps one projection up to date in a managed thread of its own: catches up at start, when a
    message wakes it, and every `poll_interval` seconds (so even a lost message delays an event by at
    most that much). Stopping interrupts it at once, whatever it is waiting for."""

    def __init__(self, projection_factory: Callable, poll_interval: float | None = None):
        self.projection_factory = projection_factory
        self.poll_interval = poll_interval

    def setup(self):
        provider = next(d for d in self.container.dependencies if isinstance(d, LedgerProvider))
        dead = next((d for d in self.container.dependencies if isinstance(d, DeadLetters)), None)
        self.ledger = provider.ledger
        self.projection = self.projection_factory(self.ledger, self.container.config)
        # None: MINQING_FOLLOW_SECONDS if set (then on every backend), else 2 s or, under LISTEN, 10 s
        self._poll_set = self.poll_interval is not None or follow_seconds() is not None
        if self.poll_interval is None:
            self.poll_interval = follow_seconds() or 2.0

        def on_parked(event: RecordedEvent, error: str) -> None:
            if dead is not None:
                dead.send(cloudevents.to_cloudevent(event), f"parked: {error}", self.projection.name)

        self.follower = consumer.Follower(self.ledger, self.projection, on_parked=on_parked)
        self._running = False
        self._wakeup = threading.Event()

    def start(self):
        self._running = True
        # PostgreSQL: woken when an append of a followed type commits (minqing.ledger_listen), so the
        # poll is only a fallback, seconds apart.
        if ledger_listen.subscribe(self.ledger.engine, self._wakeup.set, self.projection.event_types) \
                and not self._poll_set:
            self.poll_interval = max(self.poll_interval, ledger_listen.FALLBACK_POLL_SECONDS)
        self.container.spawn_managed_thread(self._follow, identifier=f"{self.projection.name}-follow")

    def stop(self):
        self._running = False
        ledger_listen.unsubscribe(self.ledger.engine, self._wakeup.set)
        self.follower.stop()
        self._wakeup.set()

    kill = stop

    def _follow(self):
        summary_due = 0.0
        while self._running:
            self._wakeup.clear()
            try:
                self.follower.wake()
                # the parked gauge for /metrics: the follower refreshes it when it parks or holds an
                # event; this catches what another process changed (`minqing consumer retry`) — every
                # SUMMARY_SECONDS, not on every wake-up (two statements each, a dozen wake-ups a report)
                if time.monotonic() >= summary_due:
                    parking.summary(self.ledger.engine, self.projection.name)
                    summary_due = time.monotonic() + SUMMARY_SECONDS
            except Exception:
                log.exception("%s: catch-up failed; retrying", self.projection.name)
            self._wakeup.wait(self.poll_interval)

    def on_message(self, body, dead_letters: DeadLetters | None) -> None:
        """Handle one broker message: wake the follower, or dead-letter a malformed message. Anything
        unexpected dead-letters it too, with the reason; if even that fails the exception propagates
        and the entrypoint rejects the message to the queue's dead-letter exchange."""
        try:
            position, _ = cloudevents.parse(body)
        except Exception as exc:
            if isinstance(exc, cloudevents.MalformedMessage):
                reason = f"malformed: {exc}"
            else:
                reason = f"unexpected {type(exc).__name__} while reading it"
                log.exception("%s: reading a message failed", self.projection.name)
            log.warning("%s: message sent to the dead-letter queue: %s", self.projection.name, reason)
            if dead_letters is None:
                raise
            raw = body if isinstance(body, (bytes, str)) else json.dumps(body, ensure_ascii=False, default=str)
            dead_letters.send(raw, reason, self.projection.name)
            return
        # else a redelivery, a duplicate from a relay restart, or an event the follower already
        # took up when the append's NOTIFY woke it (PostgreSQL: it usually has)
        if position > max(self.follower.position, self.follower.reading):
            self._wakeup.set()

    def get_dependency(self, worker_ctx):
        return self


def health(service: str, ledger: Ledger, amqp_uri: str, follower: consumer.Follower | None = None) -> tuple[int, dict]:
    """The service's health: itself, the ledger, the broker and how far behind its projection is."""
    checks: dict[str, dict] = {}
    try:
        position, _ = ledger.head()
        checks["ledger"] = {"status": "ok", "backend": ledger.engine.dialect.name, "head_position": position}
    except Exception as exc:
        checks["ledger"] = {"status": "down", "error": type(exc).__name__}
        position = None
    try:
        with kombu.Connection(amqp_uri, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = {"status": "ok"}
    except Exception as exc:
        checks["broker"] = {"status": "down", "error": type(exc).__name__}
    if follower is not None:
        checks["projection"] = projection_check(follower, position)
    ok = all(c["status"] == "ok" for c in checks.values())
    return (200 if ok else 503), {"service": service, "status": "ok" if ok else "degraded", "checks": checks}



def projection_check(follower: consumer.Follower, head: int | None) -> dict:
    """A follower is `degraded` while it has parked or held events (positions named, the first ten)
    or has retried in place for longer than its `stuck_after` (reported as `retrying`)."""
    check = {"status": "ok", "name": follower.name, "position": follower.position,
             "lag": (head - follower.position) if head is not None else None}
    try:
        aside = parking.summary(follower.ledger.engine, follower.name)
    except Exception as exc:
        return {**check, "status": "down", "error": type(exc).__name__}
    if aside["parked"] or aside["held"]:
        check.update(status="degraded", **aside)
    stuck = follower.retrying()
    if stuck is not None:
        check.update(status="degraded", retrying=stuck)
    return check


def metrics_response():
    """Prometheus text exposition of this process's metrics."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from werkzeug.wrappers import Response
    return Response(generate_latest(), status=200, content_type=CONTENT_TYPE_LATEST)
