"""The in-memory ledger passes the ledger contract suite that SQLite and PostgreSQL pass
(tests/interface/test_ledger_contract.py: every test there that needs only a ledger), and records the
very rows, hash chain included, that the SQLite ledger records."""
from __future__ import annotations

import inspect
from datetime import datetime, timezone

import pytest

from minqing.clock import ManualClock
from minqing.db import make_engine
from minqing.ledger import Ledger, NewEvent, events_table
from minqing.ledger_memory import MemoryLedger
from minqing.service_kit import create_tables
from tests.conftest import META, note
from tests.interface import test_ledger_contract as suite

LEDGER_ONLY = sorted(name for name, fn in vars(suite).items()
                     if name.startswith("test_") and callable(fn) and list(inspect.signature(fn).parameters) == ["ledger"])


def test_the_contract_suite_has_ledger_only_tests():
    assert len(LEDGER_ONLY) >= 7, LEDGER_ONLY


@pytest.mark.parametrize("name", LEDGER_ONLY)
def test_the_memory_ledger_meets_the_contract(name):
    getattr(suite, name)(MemoryLedger())


def test_the_memory_ledger_records_what_sqlite_records(tmp_path):
    """Same appends, same clock: the same positions, versions, texts and hash chain as SQLite's."""
    start = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_tables(engine)
    ledgers = [Ledger(engine, ManualClock(start)), MemoryLedger(ManualClock(start))]
    events = [note(str(i % 3), f"#{i}") for i in range(7)]
    for ledger in ledgers:
        for event in events:
            ledger.append(f"case-{event.data['case_id']}", [event])
        ledger.append("case-0", [NewEvent(events[0].type, dict(events[0].data), META, event_id=events[0].event_id)])
    with engine.connect() as conn:
        stored = [dict(r) for r in conn.execute(events_table.select().order_by(events_table.c.position)).mappings()]
    assert ledgers[1].rows() == stored and ledgers[0].head() == ledgers[1].head()
    assert ledgers[1].read_streams(["case-1", "case-9"]) == ledgers[0].read_streams(["case-1", "case-9"])
    assert ledgers[1].read_all(2, 3, types=["case.progress_noted"], upto=4) == ledgers[0].read_all(2, 3, types=["case.progress_noted"], upto=4)
    engine.dispose()
