"""Replay equality on PostgreSQL (issue #7 done-when, principle 6): a month of simulated traffic in
龙江县 — reports every working hour, cadres accepting and resolving (some late, some never, so
the timers warn, mark overdue and escalate), follow-up ratings (some unsatisfied, reopening cases),
field visits — with the assessment projection following live. Then its tables are dropped and
rebuilt from the ledger, and every scorecard of every kind and period must be identical."""
from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from minqing import consumer
from minqing.casefile import stream_of
from minqing.consumer import Follower
from minqing.ledger import Metadata, NewEvent
from minqing.service_kit import create_tables
from services.assessment.projection import AssessmentFacts
from services.assessment.scorecards import dump
from services.assessment.tables import facts_table, metadata_obj
from services.routing import actions
from tests.interface.routing_world import RoutingWorld

START = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)     # 08:00 in 龙江县, a Monday
PLACES = [("heigang", "heigang.kaoshan", "heigang.kaoshan.11"), ("heigang", "heigang.kaoshan", "heigang.kaoshan.3"),
          ("shanquan", "shanquan.pingan", "shanquan.pingan.1"), ("longjiang-zhen", "longjiang-zhen.dongsheng", None),
          ("qikeshu", "qikeshu.qikeshu", "qikeshu.qikeshu.1"), ("heigang", None, None)]
CATEGORIES = ["101", "201", "202", "301", "302", "401", "901"]


def _holder(world, case_id):
    case = world.case(case_id)
    return case, world.cadre("longjiang", case.unit, case.cadre) if case.unit and case.cadre else None


def simulate(world: RoutingWorld, projection: Follower, rng: random.Random) -> int:
    open_cases: list[str] = []
    resolved: list[str] = []
    for day in range(30):
        for hour in range(0, 10, 2):
            now = START + timedelta(days=day, hours=hour)
            world.at(now)
            for _ in range(rng.randint(0, 2)):
                township, village, hamlet = rng.choice(PLACES)
                open_cases.append(world.report("longjiang", rng.choice(CATEGORIES), township, village, hamlet, at=now))
            for case_id in list(open_cases):
                case, who = _holder(world, case_id)
                if case.status in ("resolved", "delivered", "followed_up") or who is None:
                    continue
                luck = rng.random()
                try:
                    if case.status == "assigned" and luck < 0.5:
                        world.do(case_id, who, actions.accept(who, {"note": None}))
                    elif luck < 0.25:
                        world.do(case_id, who, actions.resolve(who, {"resolution": "已处理", "on_site": luck < 0.1}))
                        resolved.append(case_id)
                except Exception:
                    pass        # the case moved meanwhile (escalated by the sweep): the cadre's action no longer applies
            for case_id in list(resolved):
                if rng.random() < 0.5:
                    rating = rng.choice(["satisfied"] * 6 + ["basically_satisfied"] * 2 + ["unsatisfied", "unreachable"])
                    world.ledger.append(stream_of(case_id), [NewEvent("case.followed_up", {
                        "case_id": case_id, "rating": rating, "via": "sms"}, Metadata("service:notify", "longjiang"))])
                    resolved.remove(case_id)
                    world.settle()
            if hour == 0 and day % 3 == 0:
                world.ledger.append("cadre-lj-c002", [NewEvent("visit.logged", {
                    "cadre": "lj-c002", "county": "longjiang", "day": (now.date()).isoformat(),
                    "hamlet": "heigang.kaoshan.3", "households": rng.randint(1, 9)}, Metadata("cadre:lj-c002", "longjiang"))])
            projection.catch_up()          # the projection follows live, a batch at a time
    world.at(START + timedelta(days=40))
    projection.catch_up()
    return sum(1 for e in world.ledger.iter_all() if e.type == "case.reported")


def _facts(engine):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(facts_table).order_by(
            facts_table.c.position, facts_table.c.metric, facts_table.c.kind, facts_table.c.subject))]


def test_rebuilding_the_assessment_from_the_ledger_gives_identical_scorecards(pg_url):
    world = RoutingWorld(pg_url, START)
    try:
        create_tables(world.engine, metadata_obj)
        projection = Follower(world.ledger, AssessmentFacts(), batch=50)
        reports = simulate(world, projection, random.Random(7))
        periods = ["2026-03", "2026-04", "2026-H1", "2026"]
        with world.engine.connect() as conn:
            live = dump(conn, "longjiang", periods)
        live_facts = _facts(world.engine)
        types = {e.type for e in world.ledger.iter_all()}
        assert reports >= 150
        assert {"case.escalated", "case.overdue", "case.resolved", "case.followed_up", "case.reopened",
                "case.accepted", "visit.logged"} <= types        # every kind of event the month should have
        started = time.perf_counter()
        consumer.rebuild(world.ledger, AssessmentFacts(), AssessmentFacts.drop)
        elapsed = time.perf_counter() - started
        with world.engine.connect() as conn:
            rebuilt = dump(conn, "longjiang", periods)
        assert rebuilt == live
        assert _facts(world.engine) == live_facts
        year_cadres = next(d for d in live if d["period"] == "2026" and d["kind"] == "cadre")["cards"]
        assert any(c["counts"]["resolved"] for c in year_cadres)
        assert any(c["counts"]["escalated_overdue"] for c in year_cadres)     # lapses swept at the end
        print(f"{reports} reports, {len(live_facts)} facts; rebuild {elapsed:.2f} s")
    finally:
        world.close()
