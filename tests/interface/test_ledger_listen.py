"""Followers woken by the append function's NOTIFY (minqing.ledger_listen), on a real PostgreSQL: a
subscriber wakes for appends of the types it follows and not for others, and every subscriber is woken
when the listening connection comes back after it was cut (appends meanwhile were not notified)."""
from __future__ import annotations

import threading
import time

from sqlalchemy import text

from minqing import ledger_listen
from minqing.db import make_engine
from minqing.ledger import Ledger, NewEvent
from minqing.service_kit import create_tables
from tests.conftest import META, note


def _waker():
    woken = threading.Event()
    return woken, woken.set


def test_parse_reads_the_head_and_the_types():
    assert ledger_listen.parse("12 case.reported,case.assigned") == (12, frozenset({"case.reported", "case.assigned"}))
    assert ledger_listen.parse("12") == (12, None)          # an older function's payload: wake everyone
    assert ledger_listen.parse("garbage") == (None, None)


def test_subscribers_wake_for_their_types_only_and_all_after_a_reconnect(pg_url):
    engine = make_engine(pg_url)
    create_tables(engine)
    ledger = Ledger(engine)
    notes, reports = _waker(), _waker()
    try:
        assert ledger_listen.subscribe(engine, notes[1], frozenset({"case.progress_noted"}))
        assert ledger_listen.subscribe(engine, reports[1], frozenset({"case.reported"}))
        listener = ledger_listen.listener(engine)
        assert listener.connected.wait(10)
        # woken once on connecting: the first subscriber surely (the second may subscribe only after the
        # connection is up — it raced once in CI — and then has nothing to catch up on)
        assert notes[0].wait(5)
        time.sleep(0.2)
        notes[0].clear(), reports[0].clear()

        ledger.append("case-1", [note("1")])
        assert notes[0].wait(5), "a progress note did not wake its follower"
        assert not reports[0].wait(0.5), "a progress note woke a follower of other types"

        ledger.append("case-2", [NewEvent("case.progress_noted", {"case_id": "2", "cadre": "c", "note": "n"}, META),
                                 NewEvent("case.progress_noted", {"case_id": "2", "cadre": "c", "note": "m"}, META)])
        notes[0].clear()

        with engine.connect() as conn:      # cut the listening connection, as a database restart would
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid() AND datname = current_database()"))
            conn.commit()
        assert reports[0].wait(ledger_listen.RECONNECT_SECONDS + 10), "not woken after the listener came back"
        assert listener.connected.wait(10)
    finally:
        ledger_listen.unsubscribe(engine, notes[1])
        ledger_listen.unsubscribe(engine, reports[1])
        engine.dispose()


def test_sqlite_has_no_listener(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        assert ledger_listen.subscribe(engine, lambda: None, None) is False
    finally:
        engine.dispose()
