"""DESIGN principle 3 on PostgreSQL: a reader that has applied position N never later finds an event
below N committing — proven with several concurrent writers and a reader tailing as fast as it can."""
from __future__ import annotations

import threading
import time

from minqing.db import make_engine, write_transaction
from minqing.ledger import Ledger
from minqing.service_kit import create_tables
from tests.conftest import note

WRITERS = 4
PER_WRITER = 150


def test_concurrent_writers_never_let_a_tailing_reader_skip(pg_url):
    engine = make_engine(pg_url, pool_size=WRITERS + 2)
    create_tables(engine)
    ledger = Ledger(engine)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(n: int) -> None:
        try:
            for i in range(PER_WRITER):
                # Several events per transaction, and a pause inside the transaction, widen the window in
                # which a sequence-based ledger would let a later position commit first.
                with write_transaction(engine) as conn:
                    ledger.append(f"case-w{n}-{i % 5}", [note(f"w{n}"), note(f"w{n}")], conn=conn)
                    if i % 10 == 0:
                        time.sleep(0.002)
        except BaseException as exc:   # pragma: no cover - reported below
            errors.append(exc)

    seen: list[int] = []

    def reader() -> None:
        after = 0
        while True:
            finished = done.is_set()
            batch = ledger.read_all(after, 50)
            for event in batch:
                seen.append(event.position)
            if batch:
                after = batch[-1].position
            elif finished:
                return

    tail = threading.Thread(target=reader)
    tail.start()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    tail.join(timeout=60)
    engine.dispose()

    assert not errors
    total = WRITERS * PER_WRITER * 2
    assert seen == list(range(1, total + 1)), "the tailing reader skipped or reordered positions"


def _contend(pg_url, first, second_expected, second_event=None):
    """A holder appends `first` and keeps its transaction open; meanwhile a contender appends to the
    same stream and must see the holder's committed result once the lock is released."""
    from minqing.ledger import ConcurrencyError
    engine = make_engine(pg_url, pool_size=4)
    create_tables(engine)
    ledger = Ledger(engine)
    started = threading.Event()

    def holder():
        with write_transaction(engine) as conn:
            ledger.append("case-same", [first], 0, conn=conn)
            started.set()
            time.sleep(0.5)

    thread = threading.Thread(target=holder)
    thread.start()
    started.wait(5)
    try:
        return ledger.append("case-same", [second_event or note("same")], second_expected)
    except ConcurrencyError as exc:
        return exc
    finally:
        thread.join()
        engine.dispose()


def test_concurrent_append_with_the_same_expected_version_gets_a_concurrency_error(pg_url):
    from minqing.ledger import ConcurrencyError
    outcome = _contend(pg_url, note("same"), 0)
    assert isinstance(outcome, ConcurrencyError) and outcome.actual == 1


def test_concurrent_append_with_any_version_lands_after(pg_url):
    from minqing.ledger import ANY
    outcome = _contend(pg_url, note("same"), ANY)
    assert outcome[0].version == 2 and outcome[0].position == 2


def test_concurrent_retry_of_the_same_event_returns_the_recorded_copy(pg_url):
    event = note("same")
    outcome = _contend(pg_url, event, 0, second_event=event)
    assert outcome[0].event_id == event.event_id and outcome[0].position == 1


def test_audit_verify_passes_on_a_ledger_being_written(pg_url):
    """Verifying a live ledger checks the history up to the head it started from, nothing else."""
    from minqing import audit
    engine = make_engine(pg_url, pool_size=4)
    create_tables(engine)
    ledger = Ledger(engine)
    for i in range(200):
        ledger.append(f"case-{i % 9}", [note(str(i % 9))])
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            ledger.append("case-live", [note("live")])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        verdicts = [audit.verify(engine, batch=50) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
        engine.dispose()
    assert all(v.ok for v in verdicts), [v.problem for v in verdicts if not v.ok]
