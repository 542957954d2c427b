"""The rebuild's fast path (minqing.replay, services/assessment/replay.py; issue #16) gives the same
projection as the live follower, row for row: facts, case states, visit days, rules, counties,
checkpoint, and the parked and held events.

The ledger is varied on purpose: every case event attribution knows (transfers after a return,
upheld and overturned; escalations automatic and asked for; joint handling; both deadlines lapsing;
late and on-site resolutions; ratings with and without `solved`; reopenings), several visits of one
cadre on one day, a second policy and two rules versions, instants on both sides of a local month's
end in 龙江县 (UTC+8), cases interleaved. Batches, pages and the kept case states are made tiny, so
the replay crosses many transactions and reads forgotten states back from the table."""
from __future__ import annotations

import copy
import logging
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from minqing import consumer, county, replay
from minqing.clock import ManualClock, isoformat
from minqing.consumer import Follower, list_parked
from minqing.db import make_engine
from minqing.ledger import Ledger, Metadata, NewEvent
from minqing.service_kit import create_tables
from services.assessment import projection as projection_module
from services.assessment import replay as assessment_replay
from services.assessment import rules as assessment_rules
from services.assessment.projection import AssessmentFacts
from services.assessment.tables import (cases_table, counties_table, facts_table, metadata_obj, rules_table,
                                        visit_days_table)

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 30, 10, tzinfo=timezone.utc)       # 18:00 in 龙江县, two days before April
META = Metadata("test:rebuild", "longjiang")
HOLDERS = [("heigang.kaoshan-station", "lj-c002", "heigang", "village"),
           ("shanquan.pingan-station", "lj-c003", "shanquan", "village"),
           ("heigang-centre", "lj-c006", "heigang", "township"),
           ("shanquan-centre", "lj-c007", "shanquan", "township")]


def _case_events(rng: random.Random, case_id: str, now: datetime) -> list[NewEvent]:
    """One case's life, drawn at random from every path attribution knows."""
    due = lambda hours: isoformat(now + timedelta(hours=hours))  # noqa: E731
    unit, cadre, township, tier = rng.choice(HOLDERS[:2])
    ev = [NewEvent("case.reported", {"case_id": case_id, "county": "longjiang", "tracking_no": f"LJ-{case_id[:8]}",
                                     "channel": "hotline", "category": rng.choice(["202", "401", "101"]), "kind": "help",
                                     "urgency": "normal", "summary": "路面塌陷",
                                     "location": {"township": township, "village": None, "hamlet": None},
                                     "reporter": {"subject": None, "name_masked": "", "phone_masked": ""},
                                     "reported_at": due(0)}, META),
          NewEvent("case.assigned", {"case_id": case_id, "unit": unit, "cadre": cadre, "tier": tier,
                                     "response_due": due(rng.choice([-1, 24])), "resolution_due": due(rng.choice([-1, 120])),
                                     "policy_version": 1, "rule": "test"}, META)]
    if rng.random() < 0.5:
        ev.append(NewEvent("case.accepted", {"case_id": case_id, "cadre": cadre, "unit": unit}, META))
    if rng.random() < 0.3:
        ev.append(NewEvent("case.overdue", {"case_id": case_id, "deadline": rng.choice(["response", "resolution"]),
                                            "due": due(1), "holder_unit": unit, "holder_cadre": cadre}, META))
    path = rng.random()
    if path < 0.2:              # returned, then re-dispatched elsewhere (upheld) or back (overturned)
        ev.append(NewEvent("case.returned", {"case_id": case_id, "from_unit": unit, "cadre": cadre, "reason": "不属本单位"}, META))
        to_unit, to_cadre, _, _ = rng.choice(HOLDERS[:2])
        ev.append(NewEvent("case.transferred", {"case_id": case_id, "from_unit": unit, "to_unit": to_unit,
                                                "to_cadre": to_cadre, "reason": "改派", "resolution_due": due(100),
                                                "policy_version": 1}, META))
        unit, cadre = to_unit, to_cadre
    elif path < 0.45:           # escalated to the township, automatically or asked for
        t_unit, t_cadre, _, _ = HOLDERS[2] if township == "heigang" else HOLDERS[3]
        ev.append(NewEvent("case.escalated", {"case_id": case_id, "from_unit": unit, "from_tier": "village",
                                              "to_unit": t_unit, "to_tier": "township", "to_cadre": t_cadre,
                                              "reason": "升级", "automatic": rng.random() < 0.5,
                                              "resolution_due": due(300), "policy_version": 1}, META))
        unit, cadre = t_unit, t_cadre
    if rng.random() < 0.2:
        ev.append(NewEvent("case.joint_handling_started", {"case_id": case_id, "lead_unit": unit,
                                                           "co_units": [unit, "dept.transport", "dept.transport"]}, META))
    if rng.random() < 0.8:
        ev.append(NewEvent("case.resolved", {"case_id": case_id, "cadre": cadre, "unit": unit,
                                             "on_site": rng.random() < 0.3, "resolution": "已处理"}, META))
        rating = rng.choice(["satisfied", "basically_satisfied", "unsatisfied", "unreachable"])
        followed = {"case_id": case_id, "rating": rating, "via": "sms"}
        if rng.random() < 0.5:
            followed["solved"] = rng.random() < 0.7
        ev.append(NewEvent("case.followed_up", followed, META))
        if rating == "unsatisfied":
            ev.append(NewEvent("case.reopened", {"case_id": case_id, "reason": "群众不满意"}, META))
            ev.append(NewEvent("case.resolved", {"case_id": case_id, "cadre": cadre, "unit": unit,
                                                 "on_site": False, "resolution": "再次处理"}, META))
    return ev


def _record(ledger: Ledger, clock: ManualClock, rng: random.Random, cases: int) -> list[str]:
    """Cases interleaved event by event, a few minutes apart, across the local month's end."""
    policy = county.read_policy_file(ROOT / "deploy" / "counties" / "longjiang.yaml")
    county.publish(ledger, policy, "test")
    rules = assessment_rules.read_rules_file(ROOT / "deploy" / "assessment" / "longjiang.yaml")
    assessment_rules.publish(ledger, rules, "test")
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(cases)]
    lives = {i: _case_events(rng, i, clock.now()) for i in ids}
    step = 0
    while lives:
        case_id = rng.choice(list(lives))
        event = lives[case_id].pop(0)
        if not lives[case_id]:
            del lives[case_id]
        clock.advance(timedelta(minutes=rng.randint(1, 9)))
        ledger.append(f"case-{case_id}", [event])
        step += 1
        if step % 40 == 0:          # a cadre's visits: several on one day count one visit day
            for _ in range(rng.randint(1, 3)):
                ledger.append("cadre-lj-c002", [NewEvent("visit.logged", {
                    "cadre": "lj-c002", "county": "longjiang", "day": clock.now().date().isoformat(),
                    "hamlet": "heigang.kaoshan.3", "households": rng.randint(0, 9)}, META)])
        if step == 200:             # policy and rules change mid-way
            changed = copy.deepcopy(policy)
            changed["name"] = policy["name"] + "（修订）"
            county.publish(ledger, changed, "test")
            assessment_rules.publish(ledger, _second_rules(rules), "test")
    return ids


def _second_rules(rules: dict) -> dict:
    thresholds = dict(rules.get("thresholds") or {})
    thresholds["promotion_veto"] = 0.75
    return assessment_rules.validate_rules({**rules, "thresholds": thresholds})


def _projection(engine) -> dict:
    """Every row of every assessment table, and the facts' keys and indexes (the replay drops and
    builds them again)."""
    tables = {facts_table: facts_table.primary_key.columns, cases_table: [cases_table.c.case_id],
              visit_days_table: list(visit_days_table.primary_key.columns),
              rules_table: list(rules_table.primary_key.columns), counties_table: [counties_table.c.county]}
    with engine.connect() as conn:
        out = {t.name: [tuple(r) for r in conn.execute(select(t).order_by(*keys))] for t, keys in tables.items()}
        out["indexes"] = sorted(conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'assessment_facts'").all())
        out["checkpoint"] = conn.exec_driver_sql(
            "SELECT position FROM checkpoints WHERE name = 'assessment.facts'").scalar()
    assert len(out["indexes"]) == 3
    return out


@pytest.fixture
def world(pg_url, monkeypatch):
    monkeypatch.setattr(replay, "BATCH_EVENTS", 37)       # many batches, pages cut across them
    monkeypatch.setattr(replay, "PAGE", 11)
    monkeypatch.setattr(assessment_replay, "STATES_KEPT", 5)     # forgotten states are read back
    engine = make_engine(pg_url)
    create_tables(engine, metadata_obj)
    clock = ManualClock(START)
    ledger = Ledger(engine, clock)
    try:
        yield ledger, clock
    finally:
        engine.dispose()


def test_the_rebuild_gives_the_live_projection_row_for_row(world, caplog):
    ledger, clock = world
    ids = _record(ledger, clock, random.Random(16), cases=90)
    Follower(ledger, AssessmentFacts(), batch=7).catch_up()       # live: small batches, as a service follows
    live = _projection(ledger.engine)
    types = {e.type for e in ledger.iter_all()}
    assert {"case.returned", "case.transferred", "case.escalated", "case.joint_handling_started", "case.overdue",
            "case.reopened", "visit.logged", "assessment.rules_published"} <= types
    months = {r[5] for r in live["assessment_facts"]}
    assert {"2026-03", "2026-04"} <= months                     # both sides of the local month's end
    assert len(live["assessment_rules"]) == 2 and len(ids) == 90

    with caplog.at_level(logging.WARNING, logger="minqing.consumer"):
        position = consumer.rebuild(ledger, AssessmentFacts(), AssessmentFacts.drop)
    assert not [r for r in caplog.records if "fast replay stopped" in r.getMessage()]   # the fast path did it all
    assert position == ledger.head()[0]
    assert _projection(ledger.engine) == live
    pooled = [ledger.engine.raw_connection() for _ in range(ledger.engine.pool.checkedin())]
    assert pooled and not any(c.driver_connection.autocommit for c in pooled)   # the reader's went back as it came
    for c in pooled:
        c.close()


def test_an_event_that_fails_is_parked_and_its_stream_held_as_live(world, monkeypatch):
    """The fast replay stops at the failing batch; the follower parks the event and holds the rest of
    its stream, exactly as the live follower did; other streams are applied."""
    ledger, clock = world
    ids = _record(ledger, clock, random.Random(17), cases=30)
    bad = ids[3]
    real = projection_module.attribute

    def attribute(state, event, policy=None):
        if event.type == "case.assigned" and event.data["case_id"] == bad:
            raise ValueError("a bug this event alone triggers")
        return real(state, event, policy)
    monkeypatch.setattr(projection_module, "attribute", attribute)
    Follower(ledger, AssessmentFacts(), batch=7, backoff=0.001, max_attempts=2).catch_up()
    live, live_parked = _projection(ledger.engine), _parked(ledger)
    assert live_parked[0][2] is None and all(p[2] == live_parked[0][0] for p in live_parked[1:])
    assert len(live_parked) > 1                                     # the case's later events were held

    class QuickFollower(Follower):          # the rebuild's follower, without seconds of backoff
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "backoff": 0.001, "max_attempts": 2})
    monkeypatch.setattr(consumer, "Follower", QuickFollower)
    position = consumer.rebuild(ledger, AssessmentFacts(), AssessmentFacts.drop)
    assert position == ledger.head()[0]
    assert _projection(ledger.engine) == live
    assert _parked(ledger) == live_parked


def _parked(ledger) -> list[tuple]:
    return [(r["position"], r["stream"], r["held_behind"]) for r in list_parked(ledger, AssessmentFacts.name)]
