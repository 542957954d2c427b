"""Routing's assignment rule on the demo county (seed 000)."""
from datetime import datetime, timezone
from pathlib import Path

import pytest

from minqing.county import CountyPolicy, read_policy_file
from services.routing.assignment import decide_assignment

LONGJIANG = Path(__file__).resolve().parents[2] / "deploy" / "counties" / "longjiang.yaml"
AT = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def county():
    return CountyPolicy(read_policy_file(LONGJIANG), 3)


def _report(category, township="heigang", village="heigang.kaoshan", hamlet=None):
    return {"case_id": "c1", "category": category,
            "location": {"township": township, "village": village, "hamlet": hamlet}}


def test_a_small_matter_stays_in_the_hamlet_with_its_liaison_cadre(county):
    """Seed 000: "县、乡(镇)、村干部每人长期包保一个屯" and "在自然屯和居民小组设立为民服务代理代办点" —
    a dispute in 11屯 goes to 11屯's post and the cadre who holds liaison for it."""
    data = decide_assignment(county, _report("101", hamlet="heigang.kaoshan.11"), AT)
    assert (data["tier"], data["unit"], data["cadre"]) == ("hamlet", "heigang.kaoshan.11-post", "lj-c001")
    assert data["policy_version"] == 3 and "包保" in data["rule"]


def test_without_a_hamlet_post_the_matter_moves_up_to_the_village(county):
    """Seed 000: "需要村级解决的限时解决" — 3屯 has no post, so the village station takes it."""
    data = decide_assignment(county, _report("101", hamlet="heigang.kaoshan.3"), AT)
    assert (data["tier"], data["unit"]) == ("village", "heigang.kaoshan-station")
    assert data["cadre"] == "lj-c002"          # holds liaison for 3屯
    assert "no hamlet unit covers the place" in data["rule"]


def test_a_larger_matter_starts_at_the_township(county):
    """Seed 000: "需要乡镇办理的限期办结" — loans coordination starts at the township centre."""
    data = decide_assignment(county, _report("401", township="shanquan", village="shanquan.pingan"), AT)
    assert (data["tier"], data["unit"], data["cadre"]) == ("township", "shanquan-centre", "lj-c007")


def test_deadlines_come_from_the_event_time_and_the_tier_limit(county):
    data = decide_assignment(county, _report("202"), AT)                # Monday 09:00 in 龙江县
    assert data["response_due"] == "2026-11-24T01:00:00.000000Z"       # 24 hours
    # 5 working days at village level: Tue–Fri and the next Monday, to its end (local 24:00)
    assert data["resolution_due"] == "2026-11-30T16:00:00.000000Z"
    assert "5 working days" in data["rule"]


def test_a_deadline_crossing_a_year_the_calendar_does_not_cover_says_so(county):
    data = decide_assignment(county, _report("202"), datetime(2026, 12, 28, 1, 0, tzinfo=timezone.utc))
    assert data["resolution_due"] == "2027-01-04T16:00:00.000000Z"
    assert "no holidays for 2027" in data["rule"]
