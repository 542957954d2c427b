"""Routing rules taken from the seeds, on the three sample counties' policies (pure; no database)."""
from __future__ import annotations

import copy
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from minqing.calendar import WorkCalendar
from minqing.county import CountyPolicy, PolicyError, read_policy_file, validate_policy
from services.routing.assignment import choose_cadre, decide_assignment, next_dispatch_meeting

COUNTIES = Path(__file__).resolve().parents[2] / "deploy" / "counties"
UTC = timezone.utc


@pytest.fixture(scope="module")
def policies():
    return {name: read_policy_file(COUNTIES / f"{name}.yaml") for name in ("longjiang", "ziyang", "luyang")}


def test_each_sample_county_has_its_own_ladder(policies):
    """Seed 000 (县乡村屯四级), seed 001 (县、镇、村三级), seed 004 (现场办结 → 社区限时办结 → 会诊 → 一线办)."""
    ladders = {name: [t["code"] for t in p["tiers"]] for name, p in policies.items()}
    assert ladders == {"longjiang": ["hamlet", "village", "township", "department"],
                       "ziyang": ["village", "town", "county-centre"],
                       "luyang": ["onsite", "community", "joint", "dispatch"]}
    luyang = {t["code"]: t for t in policies["luyang"]["tiers"]}
    assert luyang["joint"]["joint"] and luyang["dispatch"]["dispatch_day"] == 25


def test_the_shared_calendar_is_merged_into_each_published_policy(policies):
    for p in policies.values():
        assert "2026-10-01" in p["calendar"]["holidays"] and "2026-10-10" in p["calendar"]["workdays"]
        assert p["calendar"]["covers"] == [2026]


def test_the_dispatch_meeting_is_the_next_25th_or_the_next_working_day_after_it(policies):
    """Seed 004: "区'一线办'每月25日通过召开调度会，予以统筹解决". 2026-04-25 is a Saturday."""
    calendar = WorkCalendar.from_policy(policies["luyang"])
    assert next_dispatch_meeting(calendar, datetime(2026, 4, 20, 2, 0, tzinfo=UTC), 25) == date(2026, 4, 27)
    # arriving on the meeting day itself: the agenda is set, so the next month's meeting
    assert next_dispatch_meeting(calendar, datetime(2026, 11, 25, 2, 0, tzinfo=UTC), 25) == date(2026, 12, 25)
    assert next_dispatch_meeting(calendar, datetime(2026, 12, 26, 2, 0, tzinfo=UTC), 25) == date(2027, 1, 25)
    # arriving on a Sunday the 25th: the meeting is held on Monday the 26th, still ahead
    assert next_dispatch_meeting(calendar, datetime(2026, 10, 25, 2, 0, tzinfo=UTC), 25) == date(2026, 10, 26)


def test_a_policy_published_before_tier_objects_still_reads(policies):
    """DESIGN principle 7: old versions stay readable — string tiers and no timer section."""
    old = copy.deepcopy(policies["longjiang"])
    old["tiers"] = ["hamlet", "village", "township", "department"]
    del old["escalation"], old["duplicates"]
    lifted = CountyPolicy(old, 1)
    assert [t["code"] for t in lifted.tiers] == ["hamlet", "village", "township", "department"]
    assert lifted.next_tier("village")["code"] == "township" and lifted.escalation["on_resolution_overdue"] == "escalate"
    assert lifted.catalogue()["tiers"][0] == {"code": "hamlet", "name": "屯/村民小组", "level": "hamlet"}


def test_duty_cadres_share_the_load(policies):
    """Seed 001: "乡镇干部全天候值守" — two duty cadres at 城关镇: the one with fewer open cases is chosen."""
    ziyang = CountyPolicy(policies["ziyang"], 1)
    unit = ziyang.unit("chengguan-centre")
    assert choose_cadre(ziyang, unit, None, {"zy-c005": 3, "zy-c006": 1})[0]["id"] == "zy-c006"
    assert choose_cadre(ziyang, unit, None, {})[0]["id"] == "zy-c005"       # a tie goes by id


def test_a_case_in_a_community_starts_with_its_resident_cadre(policies):
    """Seed 004: "每个村居确定1名区直机关正科级干部…担任驻点干部" and "实行驻点干部现场办结"."""
    luyang = CountyPolicy(policies["luyang"], 1)
    data = decide_assignment(luyang, {"case_id": "c", "category": "101",
                                      "location": {"township": "shuanggang", "village": "shuanggang.hongqiao"}},
                             datetime(2026, 11, 10, 2, 0, tzinfo=UTC))
    assert (data["tier"], data["unit"], data["cadre"]) == ("onsite", "shuanggang.hongqiao-post", "ly-c003")


def test_broken_ladders_and_timers_are_refused_with_their_paths(policies):
    """Field errors come first (references cannot be judged on malformed fields), every one with its path."""
    broken = copy.deepcopy(policies["luyang"])
    broken["tiers"][1]["level"] = "street"
    broken["escalation"]["reopen"] = "sideways"
    broken["escalation"]["warn_before_hours"]["response"] = -1
    with pytest.raises(PolicyError) as info:
        validate_policy(broken)
    assert set(info.value.errors) == {"tiers.1.level", "escalation.reopen", "escalation.warn_before_hours.response"}


def test_broken_references_in_ladders_and_limits_are_refused_with_their_paths(policies):
    broken = copy.deepcopy(policies["luyang"])
    broken["categories"][0]["time_limits"]["nowhere"] = 3
    del broken["categories"][1]["time_limits"]["joint"]
    broken["categories"][2]["department"] = None
    broken["categories"][3]["co_departments"] = ["xinglin.wangcheng-post"]
    broken["units"][0]["tier"] = "street"
    with pytest.raises(PolicyError) as info:
        validate_policy(broken)
    assert set(info.value.errors) == {"categories.0.time_limits.nowhere", "categories.1.time_limits",
                                      "categories.2.department", "categories.3.co_departments.0", "units.0.tier"}
    ladder = copy.deepcopy(policies["luyang"])
    ladder["escalation"]["pressure"] = [{"level": "supervise", "after_hours": 10}, {"level": "chase", "after_hours": 0}]
    with pytest.raises(PolicyError) as info:
        validate_policy(ladder)
    assert set(info.value.errors) == {"escalation.pressure"}


def test_a_unit_without_a_cadre_is_refused(policies):
    broken = copy.deepcopy(policies["ziyang"])
    broken["cadres"] = [c for c in broken["cadres"] if c["unit"] != "huangu-centre"]
    with pytest.raises(PolicyError) as info:
        validate_policy(broken)
    assert set(info.value.errors) == {"units.6.code"}
