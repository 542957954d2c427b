"""Poison broker messages on the real RabbitMQ (issue 12): every one reaches `minqing.dead-letter`,
none is acked away; and a service whose follower is stuck still obeys SIGTERM at once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kombu
import pytest

from minqing import cloudevents
from minqing.relay import declare_topology
from tests.conftest import note
from tests.support import private_vhost

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker_uri(rabbit):
    uri = private_vhost(rabbit)
    with kombu.Connection(uri) as conn:
        declare_topology(conn.channel())
    return uri


def _start(database_url, broker_uri, mode):
    proc = subprocess.Popen([sys.executable, "-m", "tests.interface.poison_service", database_url, broker_uri, mode],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"the test service did not start: {line}{proc.stdout.read()}")
    return proc


def _stop(proc, timeout=30.0) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return time.monotonic() - started


def _event(**changes):
    body = {"specversion": "1.0", "id": "e1", "source": "/minqing/counties/longjiang",
            "type": "cn.minqing.case.progress_noted", "subject": "c1", "time": "2026-01-05T01:00:00.000000Z",
            "datacontenttype": "application/json", "data": {"case_id": "c1"},
            "sequence": "²", "county": "longjiang"}
    body.update(changes)
    return body


POISON = [_event(id=f"sup{i}") for i in range(8)] + [
    _event(id="number", sequence=7), _event(id="huge", sequence="9" * 5000),
    _event(id="list-data", sequence="00000000000000000001", data=[1]),
    _event(id="text-data", sequence="00000000000000000001", data="x")]


def _dead_letters(channel, count, timeout=30.0):
    queue = kombu.Queue(cloudevents.DEAD_LETTER_QUEUE)(channel)
    out, deadline = [], time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        message = queue.get(no_ack=True)
        if message is None:
            time.sleep(0.05)
            continue
        out.append((json.loads(message.body), message.headers or {}))
    return out


def test_poison_messages_are_dead_lettered_never_dropped(sqlite_url, broker_uri):
    from minqing.db import make_engine
    from minqing.service_kit import create_tables
    engine = make_engine(sqlite_url)
    create_tables(engine)             # a service requires a migrated database
    engine.dispose()
    proc = _start(sqlite_url, broker_uri, "ok")
    try:
        with kombu.Connection(broker_uri) as conn:
            channel = conn.channel()
            producer = conn.Producer(channel)
            for body in POISON:
                producer.publish(body, exchange=cloudevents.EXCHANGE, routing_key="longjiang.case.progress_noted",
                                 serializer="cloudevents", delivery_mode=2)
            got = _dead_letters(channel, len(POISON))
    finally:
        _stop(proc)
    assert sorted(body["id"] for body, _ in got) == sorted(body["id"] for body in POISON)
    assert all(headers.get("x-minqing-reason", "").startswith("malformed:") for _, headers in got)


def test_a_service_with_a_stuck_follower_obeys_sigterm_at_once(tmp_path, broker_uri):
    from minqing.db import make_engine
    from minqing.ledger import Ledger
    from minqing.service_kit import create_tables
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    create_tables(engine)
    proc = _start(url, broker_uri, "stuck")
    try:
        recorded = Ledger(engine).append("case-c1", [note("c1")])[0]
        with kombu.Connection(broker_uri) as conn:      # the wake-up that, before, drained in the handler
            conn.Producer().publish(cloudevents.to_cloudevent(recorded), exchange=cloudevents.EXCHANGE,
                                    routing_key=cloudevents.routing_key(recorded), serializer="cloudevents")
        time.sleep(3)              # well into its retries, backing off up to seconds at a time
    finally:
        took = _stop(proc)
        engine.dispose()
    output = proc.stdout.read()
    assert "retrying" in output, output
    assert took < 10.0, f"stopping took {took:.1f}s"     # an idle service takes ~3 s here; before: never
