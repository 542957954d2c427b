"""The race DESIGN principle 2 and issue #5 §6 name: the timer sweep escalating a case whose village
limit has lapsed, at the very moment the village cadre resolves it — on PostgreSQL, many times over.
Exactly one wins; the loser is decided again on the new state and does nothing."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from minqing.http import ApiError
from services.routing import actions
from tests.interface.routing_world import RoutingWorld

ROUNDS = 25


@pytest.fixture
def world(pg_url):
    w = RoutingWorld(pg_url, datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc))
    yield w
    w.close()


def test_escalation_and_resolve_race_has_exactly_one_winner(world):
    cadre = world.cadre("longjiang", "heigang.kaoshan-station", "lj-c002")
    outcomes = {"resolved": 0, "escalated": 0}
    for round_ in range(ROUNDS):
        world.clock.set(datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc))
        case_id = world.report("longjiang", "202", "heigang", "heigang.kaoshan")
        world.clock.set(datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc))   # the village's 5 working days lapsed
        gate = threading.Barrier(2)
        refused: list[ApiError] = []

        def sweep():
            gate.wait()
            world.sweeper.sweep()

        def resolve():
            gate.wait()
            try:
                actions.act(world.ledger, world.clock, case_id, cadre,
                            actions.resolve(cadre, {"resolution": f"第{round_}轮已修复", "on_site": True}))
            except ApiError as exc:
                refused.append(exc)

        threads = [threading.Thread(target=sweep), threading.Thread(target=resolve)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        world.at(world.clock.now())            # the next round of the sweep decides on the new state
        types = world.types(case_id)
        case = world.case(case_id)
        if "case.escalated" in types:
            outcomes["escalated"] += 1
            assert "case.resolved" not in types, types
            assert [e.status for e in refused] == [409] and refused[0].code == "not_holder"
            assert (case.status, case.unit) == ("assigned", "heigang-centre")
        else:
            outcomes["resolved"] += 1
            assert not refused and case.status == "resolved", types
            assert "case.overdue" not in types and types.count("case.resolved") == 1
        assert world.ledger.stream_version(f"case-{case_id}") == len(types)
    assert sum(outcomes.values()) == ROUNDS
