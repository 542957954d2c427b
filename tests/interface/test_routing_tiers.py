"""Each sample county's ladder walked on an injected clock, on PostgreSQL (issue #5, "Done when"):
assigned at the lowest tier, warned, overdue, escalated with the next tier's deadline, resolved —
with deadlines that skip the 2026 National Day holiday and count its make-up Saturday (10-10)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.routing import actions
from tests.interface.routing_world import RoutingWorld

UTC = timezone.utc


@pytest.fixture
def world(pg_url):
    w = RoutingWorld(pg_url, datetime(2026, 9, 30, 1, 0, tzinfo=UTC))     # Wed 09:00 in China
    yield w
    w.close()


def _ladder(world, case_id):
    return [(e.type, e.data.get("to_tier") or e.data.get("tier"))
            for e in world.ledger.read_stream(f"case-{case_id}") if e.type in ("case.assigned", "case.escalated")]


def test_longjiang_village_to_township(world):
    """Seed 000: "需要村级解决的限时解决…在乡镇群众之家建立代理代办服务中心，需要乡镇办理的限期办结" —
    a road repair starts at the village station; when the village's limit lapses it goes to the
    township centre with the township's limit."""
    case_id = world.report("longjiang", "202", "heigang", "heigang.kaoshan")
    assigned = world.last(case_id, "case.assigned")
    assert (assigned["tier"], assigned["unit"], assigned["cadre"]) == ("village", "heigang.kaoshan-station", "lj-c002")
    # 5 working days from Wed 09-30: 10-01…07 off; Thu 08, Fri 09, Sat 10 (调休上班), Mon 12, Tue 13
    assert assigned["resolution_due"] == "2026-10-13T16:00:00.000000Z"
    assert assigned["response_due"] == "2026-10-01T01:00:00.000000Z"

    world.at("2026-09-30T21:00:00Z")                 # 4 hours before the response deadline
    assert world.last(case_id, "case.deadline_warned")["deadline"] == "response"
    world.do(case_id, world.cadre("longjiang", "heigang.kaoshan-station", "lj-c002"),
             actions.accept(world.cadre("longjiang", "heigang.kaoshan-station", "lj-c002"), {"note": None}))
    world.at("2026-10-12T16:30:00Z")                 # a day before the resolution deadline
    warned = world.last(case_id, "case.deadline_warned")
    assert (warned["deadline"], warned["due"]) == ("resolution", "2026-10-13T16:00:00.000000Z")
    assert "case.overdue" not in world.types(case_id)

    world.at("2026-10-13T16:00:01Z")                 # the village's limit lapsed
    overdue = world.last(case_id, "case.overdue")
    assert (overdue["deadline"], overdue["holder_unit"], overdue["holder_cadre"]) == \
        ("resolution", "heigang.kaoshan-station", "lj-c002")
    escalated = world.last(case_id, "case.escalated")
    assert (escalated["from_tier"], escalated["to_tier"], escalated["to_unit"], escalated["automatic"]) == \
        ("village", "township", "heigang-centre", True)
    # 10 working days from Wed 10-14 (local): 15, 16, 19…23, 26, 27, 28
    assert escalated["resolution_due"] == "2026-10-28T16:00:00.000000Z"
    case = world.case(case_id)
    assert (case.status, case.unit, case.first_contact) == ("assigned", "heigang-centre", "lj-c002")

    township = world.cadre("longjiang", "heigang-centre", "lj-c006")
    world.do(case_id, township, actions.resolve(township, {"resolution": "已协调修复", "on_site": True}))
    world.at("2026-10-29T00:00:00Z")                 # nothing more falls due on a resolved case
    assert world.types(case_id)[-1] == "case.resolved"
    assert world.types(case_id).count("case.escalated") == 1


def test_ziyang_village_town_county_then_graded_pressure(world):
    """Seed 001: "县、镇、村三级为民服务平台" and the hotline's "接洽、登记、转办、督办、回访" — a request for
    help climbs village → town → county centre; at the top, 催办, then 督办 with a written reply owed,
    and a missed reply raises it to 挂牌督办."""
    world.clock.set(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))            # Mon 09:00
    case_id = world.report("ziyang", "101", "chengguan", "chengguan.dongcheng")
    assert world.last(case_id, "case.assigned")["resolution_due"] == "2026-11-26T16:00:00.000000Z"   # 3 working days
    world.at("2026-11-26T16:00:01Z")
    town = world.last(case_id, "case.escalated")
    assert (town["to_tier"], town["to_unit"], town["to_cadre"]) == ("town", "chengguan-centre", "zy-c005")
    assert town["resolution_due"] == "2026-12-04T16:00:00.000000Z"      # 5 working days from Fri 11-27
    world.at("2026-12-04T16:00:01Z")
    top = world.last(case_id, "case.escalated")
    assert (top["to_tier"], top["to_unit"]) == ("county-centre", "county-centre")
    assert top["resolution_due"] == "2026-12-18T16:00:00.000000Z"       # 10 working days from Mon 12-07

    world.at("2026-12-18T16:00:01Z")                 # the top tier lapses: no tier above, pressure instead
    assert world.types(case_id)[-2:] == ["case.overdue", "case.chased"]
    world.at("2026-12-19T16:00:01Z")                 # 24 hours past: 督办, reply owed within 24 hours
    supervised = world.last(case_id, "case.supervised")
    assert supervised["level"] == "supervise" and supervised["reply_due"] == "2026-12-20T16:00:01.000000Z"
    world.at("2026-12-20T16:00:02Z")                 # no written reply came: 挂牌督办
    listed = world.last(case_id, "case.supervised")
    assert listed["level"] == "listed" and "no written reply" in listed["note"]

    centre = world.cadre("ziyang", "county-centre", "zy-c009")
    world.do(case_id, centre, actions.note(centre, {"note": "已约谈相关单位，本周内解决", "reply_to": "listed"}))
    assert world.case(case_id).reply_due is None
    world.do(case_id, centre, actions.resolve(centre, {"resolution": "已解决", "on_site": False}))
    world.at("2026-12-31T00:00:00Z")
    assert world.types(case_id)[-1] == "case.resolved"


def test_luyang_onsite_community_joint_then_monthly_dispatch(world):
    """Seed 004: "实行驻点干部现场办结…实行街道社区限时办结…由区级领导牵头，组织相关部门'会诊'…区'一线办'
    每月25日通过召开调度会，予以统筹解决" — a property matter in 杏林街道望城社区 climbs all four ways."""
    case_id = world.report("luyang", "201", "xinglin", "xinglin.wangcheng")
    first = world.last(case_id, "case.assigned")
    assert (first["tier"], first["unit"], first["cadre"]) == ("onsite", "xinglin.wangcheng-post", "ly-c001")
    assert first["resolution_due"] == "2026-10-08T16:00:00.000000Z"    # 1 working day after the holiday

    world.at("2026-10-08T16:00:01Z")
    community = world.last(case_id, "case.escalated")
    assert (community["to_tier"], community["to_unit"]) == ("community", "xinglin.wangcheng-station")
    assert community["resolution_due"] == "2026-10-15T16:00:00.000000Z"  # counts Sat 10-10 (调休上班)

    world.at("2026-10-15T16:00:01Z")
    joint = world.last(case_id, "case.escalated")
    assert (joint["to_tier"], joint["to_unit"]) == ("joint", "dept.housing")
    started = world.last(case_id, "case.joint_handling_started")
    assert (started["lead_unit"], started["co_units"]) == ("dept.housing", ["dept.urban-management"])
    assert joint["resolution_due"] == "2026-10-30T16:00:00.000000Z"

    world.at("2026-10-30T16:00:01Z")
    dispatch = world.last(case_id, "case.escalated")
    assert (dispatch["to_tier"], dispatch["to_unit"]) == ("dispatch", "yixian-office")
    assert "2026-11-25" in dispatch["rule"]          # the next monthly dispatch meeting
    assert dispatch["resolution_due"] == "2026-12-16T16:00:00.000000Z"   # 15 working days after it
    assert world.case(case_id).joint_units == ()     # a new holder starts clean

    office = world.cadre("luyang", "yixian-office", "ly-c011")
    world.do(case_id, office, actions.resolve(office, {"resolution": "调度会统筹解决", "on_site": False}))
    assert _ladder(world, case_id) == [("case.assigned", "onsite"), ("case.escalated", "community"),
                                       ("case.escalated", "joint"), ("case.escalated", "dispatch")]


def test_an_unsatisfied_follow_up_reopens_one_tier_up_where_the_policy_says(world):
    """Seed 001: "确保有问必答、有难必帮、推诿必究" with 回访 closing the loop — 紫阳县's policy reopens an
    unsatisfied case one tier above the one that resolved it; 龙江县's at the same tier."""
    from minqing.ledger import Metadata, NewEvent
    results = {}
    for county_id, township, village, unit, cadre in (("ziyang", "chengguan", "chengguan.dongcheng",
                                                        "chengguan.dongcheng-agent", "zy-c001"),
                                                       ("longjiang", "heigang", "heigang.kaoshan",
                                                        "heigang.kaoshan-station", "lj-c002")):
        case_id = world.report(county_id, "901" if county_id == "longjiang" else "101", township, village)
        who = world.cadre(county_id, unit, cadre)
        world.do(case_id, who, actions.resolve(who, {"resolution": "已处理", "on_site": True}))
        world.ledger.append(f"case-{case_id}", [NewEvent("case.followed_up", {"case_id": case_id, "rating": "unsatisfied",
                                                                            "via": "sms"}, Metadata("service:notify", county_id))])
        world.settle()
        results[county_id] = world.case(case_id)
        assert world.types(case_id)[-3:] == ["case.followed_up", "case.reopened", "case.assigned"]
    assert (results["ziyang"].tier, results["ziyang"].unit) == ("town", "chengguan-centre")
    assert (results["longjiang"].tier, results["longjiang"].unit) == ("village", "heigang.kaoshan-station")
    assert results["ziyang"].first_contact == "zy-c001"          # 首问负责制 survives the reopening


def test_a_case_the_new_policy_cannot_place_does_not_stop_other_timers(world):
    """A newer policy version drops a category: its open cases cannot be escalated, so the lapse is
    recorded (charged to the holder) and pressure follows; every other case's timers go on."""
    from minqing import county
    stranded = world.report("longjiang", "202", "heigang", "heigang.kaoshan")
    other = world.report("longjiang", "301", "heigang", "heigang.kaoshan")
    doc = county.read_policy_file(county_path := __import__("pathlib").Path(__file__).resolve().parents[2]
                                  / "deploy" / "counties" / "longjiang.yaml")
    assert county_path.exists()
    doc["categories"] = [c for c in doc["categories"] if c["code"] != "202"]
    county.publish(world.ledger, doc, "test:suite")
    world.settle()
    world.at("2026-10-16T00:00:00Z")        # both village limits have lapsed
    assert world.case(other).tier == "township"
    assert "case.escalated" not in world.types(stranded)
    assert {"case.overdue", "case.chased", "case.supervised"} <= set(world.types(stranded))   # 2+ days past
    assert world.sweeper.sweep().failed == 0
