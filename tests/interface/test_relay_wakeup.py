"""The relay sleeps while nothing is appended and wakes for what is: on PostgreSQL by the append's
NOTIFY (so even with its fallback poll set to a minute, an append is published), on SQLite by its
short poll. Idling is not an error path: no reconnects while idle."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from minqing.relay import Relay
from tests.conftest import note
from tests.support import Watcher, private_vhost


@pytest.fixture
def broker_uri(rabbit):
    return private_vhost(rabbit)


def test_an_idle_relay_wakes_for_appends_without_reconnecting(ledger, broker_uri, caplog):
    watcher = Watcher(broker_uri)
    stop = threading.Event()
    # a fallback poll of a minute: on PostgreSQL only the NOTIFY can wake it within the test
    relay = Relay(ledger, broker_uri, idle_sleep=60.0)
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    caplog.set_level(logging.INFO, logger="minqing.relay")
    try:
        ledger.append("case-a", [note("a", "#0")])
        thread.start()
        assert [int(b["sequence"]) for _, b, _ in watcher.collect(1)] == [1]
        time.sleep(2.0)                                  # idle
        for i in range(1, 4):
            ledger.append("case-a", [note("a", f"#{i}")])
            got = watcher.collect(1, timeout=30)
            assert [int(b["sequence"]) for _, b, _ in got] == [i + 1]
    finally:
        stop.set()
        thread.join(10)
        watcher.close()
    problems = [r.getMessage() for r in caplog.records if r.name == "minqing.relay" and r.levelno >= logging.WARNING]
    assert problems == []
