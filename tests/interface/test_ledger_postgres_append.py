"""PostgreSQL's one-statement append (minqing.ledger_pg) against the portable path it replaced:
same hash chain, one verifiable history when both wrote into it, and no plan that scans the table."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from minqing import audit
from minqing.db import make_engine, write_transaction
from minqing.ledger import ANY, NO_STREAM, ConcurrencyError, Ledger, NewEvent, StreamWrite, chain_hash
from minqing.service_kit import create_tables
from tests.conftest import META, note

# Text that JSON must escape, or must not: quotes, backslashes, control characters, a line separator,
# characters beyond the BMP, DEL.
AWKWARD = ['引号 "quoted" \\ back\\slash', "tab\tnew\nline\rret\x08\x0c\x01\x1f", "\u2028\u2029 \U0001F600 \x7f é"]


def unchecked_append(ledger, stream, events, version):
    """Append past the contract's check: the door and the contract now refuse control characters,
    but a ledger written before that holds them, and its chain must hash and verify all the same."""
    return ledger._append(None, [StreamWrite(stream, events, version)])


def _engine(pg_url):
    engine = make_engine(pg_url)
    create_tables(engine)
    return engine


def _recompute(event, prev: str) -> str:
    from minqing.ledger import canonical_json
    return chain_hash(prev, event.position, event.event_id, event.stream, event.version, event.type,
                      event.schema_version, canonical_json(event.data), canonical_json(event.metadata.to_dict()),
                      event.recorded_at)


def test_the_function_chains_exactly_as_chain_hash_does(pg_url):
    engine = _engine(pg_url)
    try:
        ledger = Ledger(engine)
        recorded = unchecked_append(ledger, "case-a", [note("a", t) for t in AWKWARD], NO_STREAM)
        prev = "0" * 64
        for event in recorded:
            assert event.hash == _recompute(event, prev)
            prev = event.hash
        assert ledger.read_stream("case-a") == recorded
        assert audit.verify(engine).ok
    finally:
        engine.dispose()


def test_old_and_new_appends_into_one_ledger_verify_alike(pg_url):
    engine = _engine(pg_url)
    try:
        ledger = Ledger(engine)
        for i, awkward in enumerate(AWKWARD * 2):
            stream = f"case-{i % 3}"
            version = ledger.stream_version(stream)
            if i % 2:    # the portable path, statement by statement through SQLAlchemy, as before
                with write_transaction(engine) as conn:
                    ledger._append_portable(conn, [StreamWrite(stream, [note(str(i), awkward)], version)])
            else:        # the stored function: alone, joined to a caller's transaction, and a batch
                unchecked_append(ledger, stream, [note(str(i), awkward)], version)
                with write_transaction(engine) as conn:
                    ledger.append(stream, [note(str(i), "joined")], version + 1, conn=conn)
                ledger.append_many([StreamWrite(f"batch-{i}-{j}", [note(str(j)) for _ in range(3)], NO_STREAM)
                                    for j in range(4)])
        verdict = audit.verify(engine)
        assert verdict.ok, verdict.problem
        assert verdict.checked == ledger.head()[0] == 3 * 1 + 3 * (1 + 1 + 12)
    finally:
        engine.dispose()


def test_a_retried_append_returns_the_recorded_copy_and_conflicts_leave_the_callers_transaction_usable(pg_url):
    engine = _engine(pg_url)
    try:
        ledger = Ledger(engine)
        event = note("a")
        first = ledger.append("case-a", [event], NO_STREAM)
        assert ledger.append("case-a", [event], NO_STREAM) == first
        with write_transaction(engine) as conn:
            with pytest.raises(ConcurrencyError):
                ledger.append("case-a", [note("a")], NO_STREAM, conn=conn)
            assert conn.execute(text("SELECT count(*) FROM ledger_events")).scalar() == 1
        assert ledger.head()[0] == 1
    finally:
        engine.dispose()


def _scans(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = conn.execute(text("SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables "
                                "WHERE relname = 'ledger_events'")).one()
        conn.rollback()
    return row[0], row[1]


def test_the_checks_scan_indexes_even_when_first_planned_on_a_tiny_table(pg_url):
    """The issue's plan trap: a plan cached while the table was tiny stayed a sequential scan, so each
    append read the whole table. Every statement of the function is planned (and cached) on an empty
    table here; then the table grows well past a page and the appends must not scan it."""
    engine = _engine(pg_url)
    try:
        ledger = Ledger(engine)
        fast_engines = []

        def append_on_one_connection(n: int, start: int) -> None:
            for i in range(start, start + n):
                ledger.append(f"case-{i}", [note(str(i))], NO_STREAM)
                ledger.append(f"case-{i}", [note(str(i))], 1)
        append_on_one_connection(10, 0)          # plans cached on a tiny table (psycopg prepares after 5)
        ledger.append_many([StreamWrite(f"bulk-{j}", [NewEvent("case.progress_noted",
                                                               {"case_id": str(j), "cadre": "lj-c001", "note": "x" * 200},
                                                               META) for _ in range(5)], NO_STREAM)
                            for j in range(1000)])           # 5,000 events: many pages
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_force_next_flush()"))
            conn.commit()
        seq_before, idx_before = _scans(engine)
        threads = [threading.Thread(target=append_on_one_connection, args=(20, 100 + 20 * k)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # the appending connections flush their statistics when idle; force it through a fresh append
        from minqing.ledger_group import append_engine as _append_engine
        fast = _append_engine(engine)
        for _ in range(fast.pool.size()):
            fast_engines.append(fast.raw_connection())
        for raw in fast_engines:
            raw.driver_connection.execute("SELECT pg_stat_force_next_flush()")
            raw.driver_connection.execute("SELECT 1")
            raw.close()
        seq_after, idx_after = _scans(engine)
        assert seq_after == seq_before, "an append scanned ledger_events sequentially"
        assert idx_after - idx_before >= 80        # 80 appends, each with index lookups
    finally:
        engine.dispose()


def test_one_call_of_several_groups_decides_each_on_its_own_in_order(pg_url):
    """Group commit (minqing.ledger_group): one minqing_append call carries several callers' appends.
    A conflict or an already-recorded group is refused alone; the others append, a later group
    sees the versions an earlier one took, and the chain verifies."""
    from minqing import ledger_group
    engine = _engine(pg_url)
    try:
        ledger = Ledger(engine)
        first = note("x")
        ledger.append("case-x", [first], NO_STREAM)

        def encoded(stream, events, expected):
            writes = [StreamWrite(stream, events, expected)]
            return ledger_group.encode(writes, [(writes[0], e) for e in events], "2026-03-02T01:00:00.000000Z",
                                       [None if expected is ANY else expected])
        groups = [encoded("case-y", [note("y"), note("y")], NO_STREAM),     # ok: y at 1, 2
                  encoded("case-x", [note("x")], NO_STREAM),                # conflict: x is at 1
                  encoded("case-x", [first], ANY),                          # recorded already
                  encoded("case-y", [note("y")], 2),                        # ok: sees the first group's 2
                  encoded("case-y", [note("y")], 2)]                        # conflict: y is now at 3
        with write_transaction(engine) as conn:
            got = ledger_group.call_in(conn.connection.dbapi_connection, groups)
        assert [o.status for o in got] == ["ok", "conflict", "recorded", "ok", "conflict"]
        assert (got[1].stream, got[1].expected, got[1].actual) == ("case-x", 0, 1)
        assert (got[4].stream, got[4].expected, got[4].actual) == ("case-y", 2, 3)
        assert got[0].positions == [2, 3] and got[0].versions == [1, 2]
        assert got[3].positions == [4] and got[3].versions == [3]
        assert ledger.head()[0] == 4 and [e.version for e in ledger.read_stream("case-y")] == [1, 2, 3]
        assert audit.verify(engine).ok
    finally:
        engine.dispose()


def test_concurrent_writers_grouped_keep_versions_order_and_chain(pg_url):
    """Eight threads append at once, most to their own streams and some to one shared stream with
    expected versions (so some lose): every success is in the ledger once, gap-free, every loser got
    ConcurrencyError, the shared stream's versions have no hole, and appends were grouped."""
    from minqing.ledger_group import combiner as _combiner
    engine = _engine(pg_url)
    try:
        ledger = Ledger(engine)
        combiner = _combiner(engine)
        calls = []
        real = combiner._call
        combiner._call = lambda groups: calls.append(len(groups)) or real(groups)
        won, lost = [], []

        def writer(k: int) -> None:
            for i in range(30):
                ledger.append(f"case-own-{k}", [note(f"{k}")], i)
                version = ledger.stream_version("case-shared")
                try:
                    won.append(ledger.append("case-shared", [note("shared", f"{k}-{i}")], version)[0])
                except ConcurrencyError:
                    lost.append((k, i))
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        shared = ledger.read_stream("case-shared")
        assert [e.version for e in shared] == list(range(1, len(shared) + 1))
        assert sorted(e.event_id for e in shared) == sorted(e.event_id for e in won)
        assert len(won) + len(lost) == 240
        everything = list(ledger.iter_all())
        assert [e.position for e in everything] == list(range(1, 240 + len(won) + 1))
        assert audit.verify(engine).ok
        assert sum(calls) == 240 + 240 and max(calls) > 1      # every append sent once; some together
    finally:
        engine.dispose()
