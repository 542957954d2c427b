"""The relay on a real RabbitMQ: the ledger is the outbox (DESIGN principle 4)."""
from __future__ import annotations

import threading

import pytest

from minqing import checkpoints, relay as relay_mod
from minqing.db import write_transaction
from minqing.relay import Relay
from tests.conftest import note
from tests.support import Watcher, private_vhost


@pytest.fixture
def broker_uri(rabbit):
    return private_vhost(rabbit)


@pytest.fixture
def watcher(broker_uri):
    w = Watcher(broker_uri)
    yield w
    w.close()


def _run_relay(ledger, uri):
    stop = threading.Event()
    thread = threading.Thread(target=Relay(ledger, uri).run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def test_every_committed_event_is_published_in_order_as_a_cloudevent(ledger, broker_uri, watcher):
    for i in range(30):
        ledger.append(f"case-{i % 3}", [note(str(i % 3), f"#{i}")])
    stop, thread = _run_relay(ledger, broker_uri)
    try:
        got = watcher.collect(30)
        for i in range(30, 40):           # events recorded while the relay runs follow too
            ledger.append("case-late", [note("late", f"#{i}")])
        got += watcher.collect(10)
    finally:
        stop.set()
        thread.join(10)
    assert [int(body["sequence"]) for _, body, _ in got] == list(range(1, 41))
    key, body, message = got[0]
    assert key == "longjiang.case.progress_noted"
    assert body["specversion"] == "1.0" and body["type"] == "cn.minqing.case.progress_noted"
    assert body["subject"] == "0" and body["county"] == "longjiang" and body["source"] == "/minqing/counties/longjiang"
    assert body["sequence"] == "00000000000000000001" and body["data"]["note"] == "#0"
    assert message.properties["delivery_mode"] == 2
    assert message.content_type == "application/cloudevents+json"
    assert relay_mod.lag(ledger) == {"published_position": 40, "head_position": 40, "lag": 0}


def test_relay_resumes_from_its_checkpoint(ledger, broker_uri, watcher):
    for i in range(5):
        ledger.append("case-a", [note("a", f"#{i}")])
    with write_transaction(ledger.engine) as conn:
        checkpoints.load(conn, relay_mod.CHECKPOINT)
        checkpoints.save(conn, relay_mod.CHECKPOINT, 3)      # as if it had confirmed 1..3 before a crash
    stop, thread = _run_relay(ledger, broker_uri)
    try:
        got = watcher.collect(2)
        assert watcher.collect(1, timeout=1.0) == []
    finally:
        stop.set()
        thread.join(10)
    assert [int(b["sequence"]) for _, b, _ in got] == [4, 5]


def test_unroutable_events_are_confirmed_and_counted_not_lost_silently(ledger, broker_uri):
    # a virtual host of its own: no service of another test has bound a queue there
    ledger.append("case-a", [note("a")])
    before = relay_mod.UNROUTABLE._value.get()
    stop, thread = _run_relay(ledger, broker_uri)      # no queue bound at all
    try:
        for _ in range(100):
            if relay_mod.lag(ledger)["lag"] == 0:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert relay_mod.lag(ledger)["lag"] == 0
    assert relay_mod.UNROUTABLE._value.get() == before + 1


def test_only_one_relay_is_active(ledger, broker_uri, watcher):
    ledger.append("case-a", [note("a")])
    stop1, t1 = _run_relay(ledger, broker_uri)
    stop2, t2 = _run_relay(ledger, broker_uri)
    try:
        for i in range(20):
            ledger.append("case-a", [note("a", f"#{i}")])
        got = watcher.collect(21)
        assert watcher.collect(1, timeout=1.0) == []
    finally:
        stop1.set(); stop2.set()
        t1.join(10); t2.join(10)
    assert [int(b["sequence"]) for _, b, _ in got] == list(range(1, 22))
