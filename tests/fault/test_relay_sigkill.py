"""Kill the relay with SIGKILL mid-stream, restart it: every event is published, in order, none
skipped (duplicates of the unconfirmed tail are allowed; consumers absorb them)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from minqing.db import make_engine, write_transaction
from minqing.ledger import Ledger
from minqing.service_kit import create_tables
from tests.conftest import note
from tests.support import Watcher, private_vhost

EVENTS = 3000


def _start_relay(env):
    return subprocess.Popen([sys.executable, "-m", "minqing.shell.cli", "relay"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_relay_killed_mid_stream_skips_nothing(pg_url, rabbit, tmp_path):
    engine = make_engine(pg_url)
    create_tables(engine)
    ledger = Ledger(engine)
    for i in range(0, EVENTS, 100):
        with write_transaction(engine) as conn:
            for j in range(i, i + 100):
                ledger.append(f"case-{j % 50}", [note(str(j % 50), f"#{j}")], conn=conn)
    uri = private_vhost(rabbit)
    watcher = Watcher(uri)
    env = {**os.environ, "MINQING_DATABASE_URL": pg_url, "MINQING_AMQP_URI": uri,
           "MINQING_RUN_DIR": str(tmp_path)}
    received: list[int] = []
    try:
        relay = _start_relay(env)
        while len(received) < EVENTS // 3:
            batch = watcher.collect(100, timeout=30)
            assert batch, "the relay published nothing"
            received += [int(body["sequence"]) for _, body, _ in batch]
        os.kill(relay.pid, signal.SIGKILL)
        relay.wait()
        killed_at = len(received)
        received += [int(b["sequence"]) for _, b, _ in watcher.collect(EVENTS, timeout=1)]   # already in flight
        relay = _start_relay(env)
        deadline = time.monotonic() + 120
        while set(received) != set(range(1, EVENTS + 1)) and time.monotonic() < deadline:
            received += [int(b["sequence"]) for _, b, _ in watcher.collect(500, timeout=2)]
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)
    finally:
        watcher.close()
        engine.dispose()

    assert set(received) == set(range(1, EVENTS + 1)), "an event was skipped"
    first_seen = list(dict.fromkeys(received))
    assert first_seen == sorted(first_seen), "events were published out of order"
    duplicates = len(received) - EVENTS
    assert 0 < killed_at < EVENTS and duplicates <= 200    # at most the unconfirmed batch is re-published
