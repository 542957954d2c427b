"""The timer sweep's lean reading and its step ids are the ledger's reading and uuid5, only cheaper
(issue #16): the sweep must append the same events with the same ids as before."""
import uuid

import pytest

from minqing import contract
from minqing.casefile import fold
from minqing.db import make_engine, read_transaction
from minqing.ledger import Ledger, Metadata, NewEvent
from minqing.service_kit import create_tables
from services.routing.due_streams import read_due_streams
from services.routing.timers import _NS, step_id


@pytest.fixture
def ledger(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_tables(engine)
    yield Ledger(engine)
    engine.dispose()


def _reported(case_id):
    return {"case_id": case_id, "county": "longjiang", "tracking_no": f"LJ-{case_id}", "channel": "hotline",
            "category": "202", "kind": "help", "urgency": "normal", "summary": "路灯不亮",
            "location": {"township": "heigang", "village": None, "hamlet": None},
            "reporter": {"subject": "r-1", "name_masked": "张*", "phone_masked": "138****0000"},
            "reported_at": "2026-11-21T00:00:00.000000Z"}


def test_the_due_streams_read_as_the_ledger_reads_them(ledger, monkeypatch):
    meta = Metadata("operator:t", "longjiang")
    for n, case_id in enumerate(("a1", "b2", "c3")):
        events = [NewEvent("case.reported", _reported(case_id), meta)]
        events += [NewEvent("case.accepted", {"case_id": case_id, "unit": "u1", "cadre": f"c{i}"}, meta)
                   for i in range(n)]
        ledger.append(f"case-{case_id}", events, 0)
    # Stored data is lifted by the contract's upcasters on both paths.
    real_upcast = contract.upcast
    monkeypatch.setattr(contract, "upcast", lambda name, v, data: real_upcast(name, v, {**data, "lifted": name}))
    streams = ["case-c3", "case-a1", "case-none", "case-b2", "case-a1"]
    with read_transaction(ledger.engine) as conn:
        lean = read_due_streams(conn, streams)
        full = ledger.read_streams(streams, conn=conn)
    assert list(lean) == list(full) == ["case-c3", "case-a1", "case-none", "case-b2"]
    for stream, events in full.items():
        assert [tuple(e) for e in lean[stream]] == [(e.event_id, e.version, e.type, e.data, e.recorded_at)
                                                    for e in events]
        assert all(e.data["lifted"] == e.type for e in lean[stream])
        case_id = stream.removeprefix("case-")
        assert fold(case_id, lean[stream], history=False) == fold(case_id, events, history=False)


@pytest.mark.parametrize("name", ["", "case.overdue:c1:resolution:2026-03-09T16:00:00.000000Z",
                                  "case.escalated:c1:village:None", "case.chased:区县:chase:u1:None" * 5])
def test_step_ids_are_uuid5_of_the_cause(name):
    assert step_id(name) == str(uuid.uuid5(_NS, name))
