"""Helpers for tests that watch the real broker."""
from __future__ import annotations

import json
import time
import uuid

import kombu

from minqing import cloudevents  # noqa: F401  (registers the cloudevents serializer)
from minqing.relay import declare_topology


class Watcher:
    """A durable queue bound to minqing.events before anything is published, read synchronously."""

    def __init__(self, amqp_uri: str, keys=("#",), name: str | None = None):
        self.amqp_uri = amqp_uri
        self.name, self.keys = name or f"test.watch.{uuid.uuid4().hex[:8]}", keys
        self.reconnect()

    def reconnect(self) -> None:
        """After a broker restart: the durable queue and its persistent messages are still there."""
        self.conn = kombu.Connection(self.amqp_uri, connect_timeout=10)
        self.channel = self.conn.channel()
        exchange = declare_topology(self.channel)
        self.queue = kombu.Queue(self.name, durable=True,
                                 bindings=[kombu.binding(exchange, routing_key=k) for k in self.keys])
        self.queue(self.channel).declare()

    def collect(self, count: int, timeout: float = 30.0) -> list[tuple[str, dict, kombu.Message]]:
        """Up to `count` messages as (routing key, body, message), waiting at most `timeout` seconds."""
        out = []
        deadline = time.monotonic() + timeout
        bound = self.queue(self.channel)
        while len(out) < count and time.monotonic() < deadline:
            message = bound.get(no_ack=True, accept=["cloudevents", "json"])
            if message is None:
                time.sleep(0.02)
                continue
            out.append((message.delivery_info["routing_key"], json.loads(message.body), message))
        return out

    def close(self) -> None:
        try:
            self.queue(self.channel).delete()
        finally:
            self.conn.release()


DOUBLE_ASSIGNMENTS = ("SELECT stream FROM ledger_events WHERE type = 'case.assigned' "
                      "GROUP BY stream HAVING count(*) > 1")


def doubly_assigned(database_url: str) -> list[str]:
    """Case streams with more than one `case.assigned`: must always be empty."""
    from sqlalchemy import create_engine, text
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text(DOUBLE_ASSIGNMENTS))]
    finally:
        engine.dispose()


def county_dir(base, *policies):
    """A counties directory for a test stack: the given policy files, with the shared calendars beside
    it (policies include ../calendars/…)."""
    import shutil
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    counties = Path(base) / "counties"
    counties.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / "deploy" / "calendars", Path(base) / "calendars", dirs_exist_ok=True)
    for policy in policies:
        source = Path(policy) if Path(policy).is_absolute() else root / policy
        shutil.copy(source, counties / source.name)
    return counties


# Phone numbers test reports use: a resident of their own per report (a resident reporting one
# category twice while the first is open is a duplicate), every one kept for the personal-data checks.
USED_PHONES: list[str] = []


def fresh_phone() -> str:
    import random
    while True:
        phone = f"137{random.randrange(10**8):08d}"
        if phone not in USED_PHONES:
            USED_PHONES.append(phone)
            return phone


# Residents' names the tests use, searched for at the end of the session like the phone numbers.
USED_NAMES: list[str] = ["张三丰", "李四", "王五", "赵六"]


def private_vhost(rabbit) -> str:
    """The URI of a fresh vhost on the session's RabbitMQ node: what a test publishes and watches
    there is its own, whatever the session's whole-stack tests are publishing meanwhile."""
    vhost = f"t-{uuid.uuid4().hex[:10]}"
    rabbit.ctl("add_vhost", vhost)
    rabbit.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return rabbit.uri.rstrip("/") + "/" + vhost
