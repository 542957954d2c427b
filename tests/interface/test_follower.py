"""The one way services consume events (minqing.consumer), on both backends."""
from __future__ import annotations

import threading

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.exc import OperationalError

from minqing import checkpoints
from minqing.consumer import Follower, list_parked, rebuild, retry
from tests.conftest import note

md = MetaData()
applied_table = Table("test_applied", md, Column("position", Integer, primary_key=True), Column("note", String(50)))
# no key: counts every application, so a double effect shows instead of being absorbed by a constraint
applications_table = Table("test_applications", md, Column("position", Integer), Column("by", String(10)))


class Recorder:
    """A projection that records every event it applies; the primary key catches double effects."""
    name = "test.recorder"
    event_types = frozenset({"case.progress_noted"})

    def __init__(self, fail_on=(), transient_failures=0, tag="a"):
        self.fail_on = set(fail_on)
        self.transient_failures = transient_failures
        self.tag = tag

    def apply(self, conn, event):
        conn.execute(applications_table.insert().values(position=event.position, by=self.tag))
        conn.execute(applied_table.insert().values(position=event.position, note=event.data["note"]))
        if self.transient_failures:
            self.transient_failures -= 1
            raise OperationalError("SELECT 1", {}, Exception("database went away"))
        if event.data["note"] in self.fail_on:
            raise ValueError(f"cannot apply {event.data['note']}")


def _applied(engine):
    with engine.connect() as conn:
        return [r.note for r in conn.execute(select(applied_table).order_by(applied_table.c.position))]


def test_applies_in_order_and_stores_the_checkpoint_with_the_effect(ledger, engine):
    md.create_all(engine)
    for i in range(7):
        ledger.append("case-a", [note("a", f"#{i}")])
    follower = Follower(ledger, Recorder(), batch=3)
    assert follower.catch_up() == 7
    assert _applied(engine) == [f"#{i}" for i in range(7)]
    assert follower.catch_up() == 7          # nothing new: no double effect
    with engine.connect() as conn:
        assert checkpoints.load(conn, "test.recorder") == 7


def test_a_poison_event_is_parked_its_stream_held_and_the_rest_still_applied(ledger, engine):
    md.create_all(engine)
    parked = []
    for i in range(6):
        stream = "a" if i % 2 == 0 else "b"
        ledger.append(f"case-{stream}", [note(stream, f"#{i}")])
    follower = Follower(ledger, Recorder(fail_on={"#2"}), backoff=0.001, max_attempts=3,
                        on_parked=lambda event, error: parked.append(event.position))
    follower.catch_up()
    assert _applied(engine) == ["#0", "#1", "#3", "#5"]     # the poison's partial effect was rolled back
    assert parked == [3]
    rows = list_parked(ledger, "test.recorder")
    assert [(r["position"], r["stream"], r["held_behind"]) for r in rows] == [(3, "case-a", None), (5, "case-a", 3)]
    assert "cannot apply #2" in rows[0]["error"]


def test_transient_failures_are_retried_not_parked(ledger, engine):
    md.create_all(engine)
    ledger.append("case-a", [note("a", "#0")])
    follower = Follower(ledger, Recorder(transient_failures=3), backoff=0.001)
    follower.catch_up()
    assert _applied(engine) == ["#0"]
    assert list_parked(ledger) == []


def test_two_instances_of_one_consumer_apply_each_event_once(ledger, engine):
    md.create_all(engine)
    for i in range(200):
        ledger.append(f"case-{i % 7}", [note(str(i % 7), f"#{i}")])
    followers = [Follower(ledger, Recorder(tag=str(i)), batch=10) for i in range(2)]
    threads = [threading.Thread(target=f.catch_up) for f in followers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(applications_table)).scalar() == 200
    assert list_parked(ledger) == []


def test_rebuild_reproduces_the_projection(ledger, engine):
    md.create_all(engine)
    for i in range(30):
        ledger.append("case-a", [note("a", f"#{i}")])
    Follower(ledger, Recorder()).catch_up()
    before = _applied(engine)
    rebuild(ledger, Recorder(), lambda conn: conn.execute(applied_table.delete()))
    assert _applied(engine) == before


def test_a_failure_of_every_event_parks_each_and_stops_nothing(ledger, engine):
    """No "systemic" limit any more: each failing event is parked, the follower finishes, and after
    the fix a retry applies them all."""
    md.create_all(engine)
    for i in range(10):
        ledger.append(f"case-{i}", [note(str(i), f"#{i}")])
    follower = Follower(ledger, Recorder(fail_on={f"#{i}" for i in range(10)}), backoff=0.001, max_attempts=2)
    assert follower.catch_up() == 10
    assert [r["held_behind"] for r in list_parked(ledger, "test.recorder")] == [None] * 10
    retry(ledger, Recorder())
    assert _applied(engine) == [f"#{i}" for i in range(10)]
    assert list_parked(ledger) == []
