"""The follower's rules for failing events (minqing.consumer), on an SQLite ledger in a temp dir:
what parks, what is held, what is retried in place, and that stopping interrupts every wait."""
from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta

import psycopg
import psycopg.errors
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.exc import DBAPIError, OperationalError

from minqing import parking
from minqing.clock import ManualClock
from minqing.consumer import Follower, list_parked, retry, retry_in_place
from minqing.db import make_engine
from minqing.ledger import ConcurrencyError, Ledger
from minqing.service_kit import create_tables
from tests.conftest import note

md = MetaData()
applied_table = Table("rules_applied", md, Column("seq", Integer, primary_key=True, autoincrement=True),
                      Column("position", Integer, nullable=False), Column("note", String(50)))


class Notes:
    """Records each note it applies; fails on the notes in `fail_on`; `transient` makes every
    application fail as if the database had gone away."""
    name = "test.notes"
    event_types = frozenset({"case.progress_noted"})

    def __init__(self, fail_on=(), transient=False):
        self.fail_on, self.transient = set(fail_on), transient

    def apply(self, conn, event):
        if self.transient:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        conn.execute(applied_table.insert().values(position=event.position, note=event.data["note"]))
        if event.data["note"] in self.fail_on:
            raise ValueError(f"cannot apply {event.data['note']}")


@pytest.fixture
def ledger(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_tables(engine, md)
    yield Ledger(engine)
    engine.dispose()


def _append(ledger, *pairs):
    for stream, text in pairs:
        ledger.append(f"case-{stream}", [note(stream, text)])


def _applied(ledger):
    with ledger.engine.connect() as conn:
        return [r.note for r in conn.execute(select(applied_table).order_by(applied_table.c.seq))]


def _aside(ledger):
    return [(r["position"], r["held_behind"]) for r in list_parked(ledger, "test.notes")]


def test_a_parked_event_holds_its_stream_only(ledger):
    _append(ledger, ("a", "a0"), ("b", "b0"), ("a", "a1!"), ("b", "b1"), ("a", "a2"), ("c", "c0"), ("a", "a3"))
    follower = Follower(ledger, Notes(fail_on={"a1!"}), backoff=0.001, max_attempts=2)
    assert follower.catch_up() == 7
    assert _applied(ledger) == ["a0", "b0", "b1", "c0"]
    assert _aside(ledger) == [(3, None), (5, 3), (7, 3)]


def test_later_events_of_a_parked_stream_are_held_in_the_batch_path_too(ledger):
    _append(ledger, ("a", "a0!"), ("b", "b0"))
    follower = Follower(ledger, Notes(fail_on={"a0!"}), backoff=0.001, max_attempts=2)
    follower.catch_up()
    _append(ledger, ("a", "a1"), ("b", "b1"), ("a", "a2"))
    follower.catch_up()
    assert _applied(ledger) == ["b0", "b1"]
    assert _aside(ledger) == [(1, None), (3, 1), (5, 1)]


def test_many_poison_events_in_a_row_do_not_stop_other_cases(ledger):
    """Before: after 3 parked in a row the follower refused to park more and retried forever."""
    _append(ledger, *[(f"p{i}", f"p{i}!") for i in range(5)], ("ok", "fine"))
    follower = Follower(ledger, Notes(fail_on={f"p{i}!" for i in range(5)}), backoff=0.001, max_attempts=2)
    worker = threading.Thread(target=follower.catch_up, daemon=True)
    worker.start()
    worker.join(10)
    alive = worker.is_alive()
    follower.stop()
    assert not alive, "the follower should have finished, not be holding"
    assert _applied(ledger) == ["fine"]
    assert _aside(ledger) == [(i, None) for i in range(1, 6)]


def test_retry_applies_a_stream_in_order_and_keeps_what_fails_again(ledger):
    _append(ledger, ("a", "a0!"), ("b", "b0!"), ("a", "a1"), ("b", "b1"), ("a", "a2"))
    Follower(ledger, Notes(fail_on={"a0!", "b0!"}), backoff=0.001, max_attempts=2).catch_up()
    assert _aside(ledger) == [(1, None), (2, None), (3, 1), (4, 2), (5, 1)]
    # a fixed projection for stream a only: b's event still fails, its row keeps the new error
    report = retry(ledger, Notes(fail_on={"b0!"}), position=5)
    assert [(r["position"], r["outcome"]) for r in report] == [(1, "applied"), (3, "applied"), (5, "applied")]
    assert _applied(ledger) == ["a0!", "a1", "a2"]
    report = retry(ledger, Notes(fail_on={"b0!"}))
    assert [(r["position"], r["outcome"]) for r in report] == [(2, "failed")]
    assert _aside(ledger) == [(2, None), (4, 2)]
    retry(ledger, Notes())
    assert _applied(ledger) == ["a0!", "a1", "a2", "b0!", "b1"]
    assert _aside(ledger) == []
    with pytest.raises(LookupError):
        retry(ledger, Notes(), position=2)


def test_a_held_event_that_fails_on_retry_becomes_the_parked_one(ledger):
    _append(ledger, ("a", "a0!"), ("a", "a1!"), ("a", "a2"))
    Follower(ledger, Notes(fail_on={"a0!"}), backoff=0.001, max_attempts=2).catch_up()
    retry(ledger, Notes(fail_on={"a1!"}))
    assert _aside(ledger) == [(2, None), (3, 2)]
    assert "cannot apply a1!" in list_parked(ledger, "test.notes")[0]["error"]


def test_the_gauge_counts_what_is_set_aside_now(ledger):
    _append(ledger, ("a", "a0!"), ("a", "a1"))
    Follower(ledger, Notes(fail_on={"a0!"}), backoff=0.001, max_attempts=2).catch_up()
    assert parking.SET_ASIDE.labels("test.notes")._value.get() == 2
    assert parking.summary(ledger.engine, "test.notes") == {"parked": 1, "held": 1, "parked_positions": [1],
                                                            "held_positions": [2]}
    retry(ledger, Notes())
    assert parking.SET_ASIDE.labels("test.notes")._value.get() == 0


def test_stop_interrupts_a_retry_loop_at_once(ledger):
    _append(ledger, ("a", "a0"))
    follower = Follower(ledger, Notes(transient=True), backoff=2.0)
    worker = threading.Thread(target=follower.catch_up, daemon=True)
    worker.start()
    time.sleep(0.5)             # now in its first 2-second backoff
    started = time.monotonic()
    follower.stop()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 1.0
    assert _aside(ledger) == []          # transient trouble parks nothing


def test_a_follower_retrying_in_place_too_long_reports_itself(ledger):
    _append(ledger, ("a", "a0"))
    clock = ManualClock()
    follower = Follower(ledger, Notes(transient=True), backoff=0.01, clock=clock, stuck_after=60)
    worker = threading.Thread(target=follower.catch_up, daemon=True)
    worker.start()
    try:
        time.sleep(0.2)
        assert follower.retrying() is None
        clock.advance(timedelta(seconds=61))
        assert follower.retrying()["after_position"] == 0
    finally:
        follower.stop()
        worker.join(5)


def _wrapped(orig, base=psycopg.Error):
    return DBAPIError.instance("INSERT", {}, orig, base)


def _sqlite_error(sql, *params):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x)")
    try:
        conn.execute(sql, params)
    except sqlite3.Error as exc:
        return _wrapped(exc, sqlite3.Error)
    finally:
        conn.close()
    raise AssertionError("no error")


def _sqlite_locked(tmp_path):
    path = tmp_path / "locked.db"
    first, second = sqlite3.connect(path, isolation_level=None), sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        first.execute("BEGIN IMMEDIATE")
        second.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        return _wrapped(exc, sqlite3.Error)
    finally:
        first.close()
        second.close()
    raise AssertionError("no error")


def _nul_error():
    from psycopg.types.string import StrDumper
    try:
        StrDumper(str).dump("a\x00b")
    except psycopg.Error as exc:
        return _wrapped(exc)
    raise AssertionError("no error")


@pytest.mark.parametrize("make, in_place", [
    (lambda tmp: ConcurrencyError("case-a", 1, 2), True),
    (lambda tmp: _wrapped(psycopg.errors.AdminShutdown("terminating connection")), True),
    (lambda tmp: _wrapped(psycopg.errors.SerializationFailure("could not serialize")), True),
    (lambda tmp: _wrapped(psycopg.errors.ReadOnlySqlTransaction("read-only")), True),
    (lambda tmp: _wrapped(psycopg.errors.UndefinedTable("relation does not exist")), True),
    (lambda tmp: _wrapped(psycopg.OperationalError("connection failed: Connection refused")), True),
    (lambda tmp: _sqlite_locked(tmp), True),
    (lambda tmp: _sqlite_error("SELECT * FROM missing"), True),
    (lambda tmp: _nul_error(), False),                                            # psycopg DataError, no SQLSTATE
    (lambda tmp: _wrapped(psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum")), False),
    (lambda tmp: _wrapped(psycopg.errors.InternalError_("unexpected chunk number")), False),
    (lambda tmp: _wrapped(psycopg.errors.UniqueViolation("duplicate key")), False),
    (lambda tmp: _wrapped(psycopg.errors.SyntaxError("syntax error")), False),
    (lambda tmp: _sqlite_error("INSERT INTO t VALUES (?)", {"a": 1}), False),     # cannot bind a dict
    (lambda tmp: ValueError("a bug this event alone triggers"), False),
])
def test_what_is_retried_in_place_and_what_parks(make, in_place, tmp_path):
    assert retry_in_place(make(tmp_path)) is in_place


class FixedNotes(Notes):
    """Notes after the fix, built as the CLI builds a projection: (ledger, config)."""

    def __init__(self, ledger=None, config=None):
        super().__init__()


def test_the_cli_lists_parked_and_held_events_and_retries_them(ledger, tmp_path, monkeypatch, capsys):
    import json

    from minqing.shell import cli
    from minqing.shell.commands import records
    _append(ledger, ("a", "a0!"), ("b", "b0"), ("a", "a1"))
    Follower(ledger, Notes(fail_on={"a0!"}), backoff=0.001, max_attempts=2).catch_up()
    monkeypatch.setenv("MINQING_DATABASE_URL", str(ledger.engine.url))
    monkeypatch.setenv("MINQING_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setitem(records.PROJECTIONS, "test.notes", "tests.unit.test_follower_rules:FixedNotes")
    assert cli.main(["consumer", "parked", "test.notes"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["position"], r["stream"], r["state"], r["held_behind"]) for r in rows] == \
        [(1, "case-a", "parked", None), (3, "case-a", "held", 1)]
    assert "cannot apply a0!" in rows[0]["error"] and rows[0]["type"] == "case.progress_noted"
    assert rows[0]["parked_at"].endswith("+08:00")          # as people read it (issue #18.1), stored UTC
    assert cli.main(["consumer", "retry", "test.notes", "--position", "2"]) == 1      # nothing parked there
    assert cli.main(["consumer", "retry", "test.notes", "--all"]) == 0
    assert _applied(ledger) == ["b0", "a0!", "a1"] and _aside(ledger) == []
