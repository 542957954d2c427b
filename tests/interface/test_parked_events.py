"""A poison event on PostgreSQL (issue 12): a NUL character that a text column refuses parks the
event and holds only its own case; /health names it; after the fix, `retry` clears it."""
from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, select

from minqing import parking
from minqing.consumer import Follower, list_parked, retry
from minqing.db import make_engine
from minqing.ledger import ANY, Ledger, StreamWrite
from minqing.service_kit import create_tables, health
from tests.conftest import note

md = MetaData()
texts_table = Table("test_texts", md, Column("seq", Integer, primary_key=True, autoincrement=True),
                    Column("position", Integer, nullable=False), Column("stream", String(200)),
                    Column("note", Text, nullable=False))


class Texts:
    """Stores each note as text, as routing stores a summary."""
    name = "test.texts"
    event_types = frozenset({"case.progress_noted"})

    def apply(self, conn, event):
        conn.execute(texts_table.insert().values(position=event.position, stream=event.stream,
                                                 note=self.clean(event.data["note"])))

    def clean(self, text):
        return text


class FixedTexts(Texts):
    def clean(self, text):
        return text.replace("\x00", "")


def _stored(engine):
    with engine.connect() as conn:
        return [(r.stream, r.note) for r in conn.execute(select(texts_table).order_by(texts_table.c.seq))]


def test_a_nul_in_text_holds_only_its_case_and_retry_after_the_fix_clears_it(pg_url, rabbit):
    engine = make_engine(pg_url)
    create_tables(engine, md)
    ledger = Ledger(engine)
    for stream, text in [("a", "a0"), ("b", "b0"), ("a", "a\x00b"), ("b", "b1"), ("a", "a2"), ("c", "c0"),
                         ("a", "a3")]:
        # past the contract's check (it refuses NUL since issue #12): history written before that holds them
        ledger._append(None, [StreamWrite(f"case-{stream}", [note(stream, text)], ANY)])   # JSON keeps "\u0000"
    assert ledger.read_all(2, 1)[0].data["note"] == "a\x00b"
    follower = Follower(ledger, Texts(), backoff=0.001, max_attempts=2)
    assert follower.catch_up() == 7
    assert _stored(engine) == [("case-a", "a0"), ("case-b", "b0"), ("case-b", "b1"), ("case-c", "c0")]
    rows = list_parked(ledger, "test.texts")
    assert [(r["position"], r["held_behind"]) for r in rows] == [(3, None), (5, 3), (7, 3)]
    assert "NUL" in rows[0]["error"] and "DataError" in rows[0]["error"]

    status, body = health("test", ledger, rabbit.uri, follower)
    assert status == 503 and body["status"] == "degraded"
    check = body["checks"]["projection"]
    assert check["status"] == "degraded" and check["name"] == "test.texts"
    assert (check["parked_positions"], check["held_positions"]) == ([3], [5, 7])
    assert parking.SET_ASIDE.labels("test.texts")._value.get() == 3

    ledger.append("case-a", [note("a", "a4")])        # still held: the case's events stay in order
    ledger.append("case-d", [note("d", "d0")])
    follower.catch_up()
    assert _stored(engine)[-1] == ("case-d", "d0")
    assert retry(ledger, Texts(), position=5)[0]["outcome"] == "failed"     # not fixed yet: kept
    assert len(list_parked(ledger, "test.texts")) == 4

    report = retry(ledger, FixedTexts(), position=7)
    assert [r["position"] for r in report] == [3, 5, 7, 8] and {r["outcome"] for r in report} == {"applied"}
    assert [n for s, n in _stored(engine) if s == "case-a"] == ["a0", "ab", "a2", "a3", "a4"]
    assert list_parked(ledger) == []
    status, body = health("test", ledger, rabbit.uri, follower)
    assert status == 200 and body["checks"]["projection"]["status"] == "ok"
    ledger.append("case-a", [note("a", "a5")])        # the case moves on by itself again
    follower.catch_up()
    assert _stored(engine)[-1] == ("case-a", "a5")
    engine.dispose()
