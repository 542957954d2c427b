"""Issue #17 §4: no rate ever leaves [0, 1], whatever happens to a case.

Generated histories — random sequences of every case event the attribution reads (assignments,
transfers, escalations automatic or requested, returns, acceptances, joint handling, lapses,
resolutions, ratings with and without the solved answer, reopenings) for a few cases, at times that
cross a month's end in the county's zone — go through the real projection (attribution.attribute via
AssessmentFacts) into an in-memory SQLite database and out through the real scorecard and ranking
functions. Every rate and composite of every subject, kind and period is null or within [0, 1].
"""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import create_engine

from minqing import county
from minqing.clock import isoformat
from minqing.ledger import Metadata, RecordedEvent
from services.assessment.projection import AssessmentFacts
from services.assessment.rules import RATES
from services.assessment.scorecards import KINDS, rankings, scorecards
from services.assessment.tables import metadata_obj

POLICY = county.read_policy_file(Path("deploy/counties/longjiang.yaml"))
HOLDERS = [("lj-c002", "heigang.kaoshan-station", "village"), ("lj-c003", "shanquan.pingan-station", "village"),
           ("lj-c006", "heigang-centre", "township"), ("lj-c011", "dept.transport", "department")]
START = datetime(2026, 3, 31, 10, tzinfo=timezone.utc)        # 18:00 on 31 March in 龙江县: April is 6 h away
PERIODS = ("2026-03", "2026-04", "2026-H1", "2026")

holder = st.sampled_from(HOLDERS)
hours = st.floats(min_value=0, max_value=60)
step = st.one_of(
    st.tuples(st.just("case.assigned"), holder, hours, hours),
    st.tuples(st.just("case.transferred"), holder, hours, hours),
    st.tuples(st.just("case.escalated"), holder, st.booleans(), st.sampled_from(["hamlet", "village", "township"])),
    st.tuples(st.just("case.returned"), holder),
    st.tuples(st.just("case.accepted"), holder),
    st.tuples(st.just("case.joint_handling_started"), holder),
    st.tuples(st.just("case.overdue"), holder),
    st.tuples(st.just("case.resolved"), holder, st.booleans()),
    st.tuples(st.just("case.followed_up"),
              st.sampled_from(["satisfied", "basically_satisfied", "unsatisfied", "unreachable"]),
              st.sampled_from([None, True, False])),
    st.tuples(st.just("case.reopened")),
)
history = st.lists(st.tuples(st.integers(min_value=0, max_value=3), hours, step), min_size=1, max_size=40)


def _data(kind: str, args: tuple, at: datetime) -> dict:
    due = lambda h: isoformat(at + timedelta(hours=h))          # noqa: E731
    if kind in ("case.assigned", "case.transferred"):
        (cadre, unit, tier), response_h, resolve_h = args
        if kind == "case.assigned":
            return {"unit": unit, "cadre": cadre, "tier": tier, "response_due": due(response_h),
                    "resolution_due": due(resolve_h), "policy_version": 1, "rule": "t"}
        return {"from_unit": "x", "to_unit": unit, "to_cadre": cadre, "reason": "r", "policy_version": 1,
                "response_due": due(response_h), "resolution_due": due(resolve_h)}
    if kind == "case.escalated":
        (cadre, unit, tier), automatic, from_tier = args
        return {"from_unit": "heigang.kaoshan-station", "from_tier": from_tier, "to_unit": unit, "to_tier": tier,
                "to_cadre": cadre, "reason": "r", "automatic": automatic, "policy_version": 1,
                "resolution_due": due(48), "response_due": due(4)}
    if kind == "case.returned":
        return {"from_unit": args[0][1], "cadre": args[0][0], "reason": "not ours"}
    if kind == "case.accepted":
        return {"cadre": args[0][0], "unit": args[0][1]}
    if kind == "case.joint_handling_started":
        return {"lead_unit": args[0][1], "co_units": ["dept.housing", args[0][1]]}
    if kind == "case.overdue":
        return {"deadline": "resolution", "due": due(0), "holder_unit": args[0][1], "holder_cadre": args[0][0]}
    if kind == "case.resolved":
        return {"cadre": args[0][0], "unit": args[0][1], "on_site": args[1], "resolution": "done"}
    if kind == "case.followed_up":
        return {"rating": args[0], "via": "sms", **({} if args[1] is None else {"solved": args[1]})}
    return {"reason": "unsatisfied"}


def _events(steps) -> list[RecordedEvent]:
    meta = Metadata("test", "longjiang")
    position = itertools.count(1)
    out = [RecordedEvent(next(position), "p", "county-longjiang", 1, "policy.published", 1,
                         {"county": "longjiang", "version": 1, "digest": "0" * 64, "policy": POLICY}, meta,
                         isoformat(START), "")]
    at, seen = START, set()
    for case_no, gap, (kind, *args) in steps:
        at += timedelta(hours=gap)
        case_id = f"case-{case_no}"
        if case_id not in seen:                 # every case begins with its report
            seen.add(case_id)
            out.append(RecordedEvent(next(position), f"r{case_no}", f"case-{case_id}", 1, "case.reported", 1,
                                     {"case_id": case_id, "county": "longjiang", "category": "401" if case_no % 2 else "202",
                                      "location": {"township": ["heigang", "qikeshu"][case_no % 2]}},
                                     meta, isoformat(at), ""))
        out.append(RecordedEvent(next(position), f"e{len(out)}", f"case-{case_id}", 1, kind, 1,
                                 {"case_id": case_id, **_data(kind, tuple(args), at)}, meta, isoformat(at), ""))
    return out


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history)
def test_no_rate_ever_leaves_zero_to_one(steps):
    engine = create_engine("sqlite://")
    metadata_obj.create_all(engine)
    events = _events(steps)
    with engine.begin() as conn:
        AssessmentFacts().apply_batch(conn, events)
    with engine.connect() as conn:
        for period in PERIODS:
            for kind in KINDS:
                for card in scorecards(conn, "longjiang", period, kind)["cards"]:
                    for rate in RATES:
                        value = card["rates"][rate]
                        assert value is None or 0 <= value <= 1, (period, kind, card["subject"], rate, card["counts"])
                    assert card["composite"] is None or 0 <= card["composite"] <= 1
                    counts = card["counts"]
                    assert counts["resolved"] <= counts["in_hand"] and counts["in_hand"] <= counts["received"] + counts["resolved"]
            for rows in rankings(conn, "longjiang", period)["levels"].values():
                assert all(0 <= r["composite"] <= 1 for r in rows)
    engine.dispose()


def test_the_property_would_catch_the_old_count():
    """The generator reaches the bug of issue #17 §4: a case resolved twice in a month in one township."""
    steps = [(1, 0, ("case.assigned", HOLDERS[0], 4.0, 40.0)), (1, 1, ("case.resolved", HOLDERS[0], False)),
             (1, 1, ("case.followed_up", "unsatisfied", False)), (1, 0, ("case.reopened",)),
             (1, 0, ("case.assigned", HOLDERS[0], 4.0, 40.0)), (1, 1, ("case.resolved", HOLDERS[0], False))]
    engine = create_engine("sqlite://")
    metadata_obj.create_all(engine)
    with engine.begin() as conn:
        AssessmentFacts().apply_batch(conn, _events(steps))
    with engine.connect() as conn:
        card = scorecards(conn, "longjiang", "2026-03", "township", "qikeshu")["cards"][0]
    assert (card["counts"]["received"], card["counts"]["resolved"], card["rates"]["resolution_rate"]) == (1, 1, 1.0)
