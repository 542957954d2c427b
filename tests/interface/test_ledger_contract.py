"""The ledger contract, run against both backends (SQLite and a real PostgreSQL)."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text

from minqing import audit
from minqing.contract import ContractViolation
from minqing.ledger import (ANY, NO_STREAM, ConcurrencyError, DuplicateEventIdError, NewEvent, StreamWrite,
                            events_table)
from tests.conftest import META, note


def test_append_and_read_stream(ledger):
    first = ledger.append("case-a", [note("a", "一"), note("a", "二")], NO_STREAM)
    assert [(e.version, e.position) for e in first] == [(1, 1), (2, 2)]
    ledger.append("case-b", [note("b")], NO_STREAM)
    third = ledger.append("case-a", [note("a", "三")], 2)
    assert third[0].version == 3 and third[0].position == 4
    stream = ledger.read_stream("case-a")
    assert [e.data["note"] for e in stream] == ["一", "二", "三"]
    assert [e.version for e in ledger.read_stream("case-a", after_version=1)] == [2, 3]
    assert ledger.stream_version("case-a") == 3 and ledger.stream_version("case-none") == 0
    e = stream[0]
    assert e.metadata == META and e.schema_version == 1 and len(e.hash) == 64 and e.recorded_at.endswith("Z")


def test_expected_version_conflict_is_catchable_and_appends_nothing(ledger):
    ledger.append("case-a", [note("a")], NO_STREAM)
    with pytest.raises(ConcurrencyError) as info:
        ledger.append("case-a", [note("a")], NO_STREAM)
    assert (info.value.expected, info.value.actual) == (0, 1)
    with pytest.raises(ConcurrencyError):
        ledger.append("case-a", [note("a")], 5)
    assert ledger.head()[0] == 1
    ledger.append("case-a", [note("a")], ANY)
    assert ledger.stream_version("case-a") == 2


def test_append_is_idempotent_by_event_id(ledger):
    event = note("a")
    once = ledger.append("case-a", [event], NO_STREAM)
    again = ledger.append("case-a", [event], NO_STREAM)     # a retried command: same ids
    assert again == once
    assert ledger.head()[0] == 1


def test_reused_event_id_with_other_content_is_refused(ledger):
    event = note("a")
    ledger.append("case-a", [event])
    clash = NewEvent(event.type, {**event.data, "note": "别的内容"}, META, event_id=event.event_id)
    with pytest.raises(DuplicateEventIdError):
        ledger.append("case-a", [clash])


def test_multi_stream_append_is_atomic(ledger):
    ledger.append("case-b", [note("b")], NO_STREAM)
    with pytest.raises(ConcurrencyError):
        ledger.append_many([StreamWrite("case-a", [note("a")], NO_STREAM),
                            StreamWrite("case-b", [note("b")], NO_STREAM)])
    assert ledger.stream_version("case-a") == 0 and ledger.head()[0] == 1


def test_events_outside_the_contract_are_refused_and_nothing_is_written(ledger):
    with pytest.raises(ContractViolation) as info:
        ledger.append("case-a", [note("a"), NewEvent("case.progress_noted", {"case_id": "a"}, META)])
    assert set(info.value.errors) == {"cadre", "note"}
    with pytest.raises(ContractViolation):
        ledger.append("case-a", [NewEvent("case.teleported", {"case_id": "a"}, META)])
    assert ledger.head()[0] == 0


def test_raw_personal_data_never_enters_the_ledger(ledger):
    """DESIGN principle 8: events carry masked forms only."""
    with pytest.raises(ContractViolation) as info:
        ledger.append("case-a", [note("a", "村民电话 13812345678")])
    assert "note" in info.value.errors
    ledger.append("case-a", [note("a", "村民电话 138****5678")])


def test_read_all_in_batches_covers_everything_in_order(ledger):
    for i in range(25):
        ledger.append(f"case-{i % 4}", [note(str(i % 4), f"#{i}")])
    seen, after = [], 0
    while batch := ledger.read_all(after, 7):
        assert len(batch) <= 7
        seen.extend(e.position for e in batch)
        after = batch[-1].position
    assert seen == list(range(1, 26))
    assert [e.position for e in ledger.iter_all(after=20, batch=2)] == [21, 22, 23, 24, 25]


def test_hash_chain_verifies_a_real_history(ledger, engine):
    for i in range(10):
        ledger.append(f"case-{i % 3}", [note(str(i % 3), f"#{i}")])
    verdict = audit.verify(engine)
    assert verdict.ok and verdict.checked == 10 and verdict.head_position == 10


def _tamper(engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql))


@pytest.mark.parametrize("sql, bad_position", [
    # an edited event
    ("UPDATE ledger_events SET data = replace(data, '#4', '#X') WHERE position = 5", 5),
    # a deleted event in the middle
    ("DELETE FROM ledger_events WHERE position = 4", 4),
    # a deleted event at the end (the head no longer matches)
    ("DELETE FROM ledger_events WHERE position = 8", 8),
    # two events swapped (reordered)
    ("UPDATE ledger_events SET position = CASE position WHEN 3 THEN 1003 WHEN 6 THEN 1006 END WHERE position IN (3, 6);"
     "UPDATE ledger_events SET position = 6 WHERE position = 1003;"
     "UPDATE ledger_events SET position = 3 WHERE position = 1006", 3),
    # an event inserted (a copy of event 2 squeezed in as position 9, after the real tail)
    ("INSERT INTO ledger_events (position, event_id, stream, version, type, schema_version, data, metadata, "
     "recorded_at, hash) SELECT 9, 'forged', stream, 99, type, schema_version, data, metadata, recorded_at, hash "
     "FROM ledger_events WHERE position = 2", 9),
    # metadata rewritten (who did it)
    ("UPDATE ledger_events SET metadata = replace(metadata, 'test:suite', 'someone:else') WHERE position = 2", 2),
])
def test_any_tampering_is_detected_and_located(ledger, engine, sql, bad_position):
    for i in range(8):
        ledger.append(f"case-{i % 3}", [note(str(i % 3), f"#{i}")])
    for statement in sql.split(";"):
        _tamper(engine, statement)
    verdict = audit.verify(engine)
    assert not verdict.ok
    assert verdict.bad_position == bad_position, verdict.problem


def test_upcasting_lifts_old_versions_on_read_without_rewriting(ledger, engine, monkeypatch):
    """Old schema versions are upcast on read, never rewritten (DESIGN §5)."""
    from minqing import contract
    ledger.append("case-a", [note("a", "旧")])
    old = contract.CATALOGUE["case.progress_noted"]
    lifted = contract.EventType(old.name, 2, old.schema, upcasters={1: lambda d: {**d, "note": d["note"] + "（升级）"}})
    monkeypatch.setitem(contract.CATALOGUE, "case.progress_noted", lifted)
    event = ledger.read_stream("case-a")[0]
    assert event.schema_version == 2 and event.data["note"] == "旧（升级）"
    with engine.connect() as conn:
        stored = conn.execute(select(events_table.c.schema_version, events_table.c.data)).one()
    assert stored.schema_version == 1 and "升级" not in stored.data
    assert audit.verify(engine).ok
