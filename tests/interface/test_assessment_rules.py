"""Assessment figures with hand-computed expectations, on SQLite and PostgreSQL: every metric and
every attribution case (issue #7 done-when), each citing the seed rule it checks.

The events are appended by hand to a real ledger (well-formed, as routing and notify would write
them) and the projection follows them; `scorecards` sums what it attributed."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from minqing import county
from minqing.clock import ManualClock, isoformat
from minqing.consumer import Follower
from minqing.ledger import Ledger, Metadata, NewEvent
from minqing.service_kit import create_tables
from services.assessment import rules as rules_mod
from services.assessment.projection import AssessmentFacts
from services.assessment.scorecards import explain, rankings, scorecards
from services.assessment.tables import metadata_obj

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)       # Monday 09:00 in 龙江县
VILLAGE, TOWNSHIP, DEPT = "heigang.kaoshan-station", "heigang-centre", "dept.transport"


class World:
    def __init__(self, engine):
        create_tables(engine, metadata_obj)
        self.clock = ManualClock(T0)
        self.ledger = Ledger(engine, self.clock)
        county.publish(self.ledger, county.read_policy_file(Path("deploy/counties/longjiang.yaml")), "test")
        self.follower = Follower(self.ledger, AssessmentFacts())
        self.n = 0

    def at(self, hours: float) -> "World":
        self.clock.set(T0 + timedelta(hours=hours))
        return self

    def emit(self, case_id: str, type_: str, **data):
        self.ledger.append(f"case-{case_id}", [NewEvent(type_, {"case_id": case_id, **data},
                                                        Metadata("test", "longjiang"))])

    def case(self, township="heigang", unit=VILLAGE, cadre="lj-c002", response_h=24, resolve_h=120,
             category="202") -> str:
        self.n += 1
        case_id = f"case-{self.n:03d}"
        self.emit(case_id, "case.reported", county="longjiang", tracking_no=f"LJ-20260302-{self.n:04d}",
                  channel="hotline", category=category, kind="help", urgency="normal", summary="路面塌陷",
                  location={"township": township, "village": None, "hamlet": None},
                  reporter={"subject": None, "name_masked": "", "phone_masked": ""},
                  reported_at=isoformat(self.clock.now()))
        self.emit(case_id, "case.assigned", unit=unit, cadre=cadre, tier="village", policy_version=1, rule="t",
                  response_due=isoformat(T0 + timedelta(hours=response_h)),
                  resolution_due=isoformat(T0 + timedelta(hours=resolve_h)))
        return case_id

    def resolve(self, case_id, unit=VILLAGE, cadre="lj-c002", on_site=False):
        self.emit(case_id, "case.resolved", unit=unit, cadre=cadre, on_site=on_site, resolution="已修复")

    def rate(self, case_id, rating):
        self.emit(case_id, "case.followed_up", rating=rating, via="sms")

    def card(self, subject, kind="cadre", period="2026-03"):
        self.follower.catch_up()
        with self.ledger.engine.connect() as conn:
            cards = scorecards(conn, "longjiang", period, kind, subject)["cards"]
        return cards[0] if cards else None


@pytest.fixture
def world(engine):
    return World(engine)


def test_resolution_and_on_time_rates(world):
    """Seed 000 (限时办结) and DESIGN §1: 办结率 = resolved / received; 承诺期限兑现率 = resolved by the
    promised limit (and never lapsed) / resolved or lapsed. Three cases: one on time, one late, one
    open (its deadline not reached) → 2/3 and 1/2."""
    a, b, _ = world.case(), world.case(), world.case()
    world.at(10).resolve(a)
    world.at(130).resolve(b)                      # the limit was 120 h
    c = world.card("lj-c002")
    assert c["counts"]["received"] == 3 and c["counts"]["resolved"] == 2 and c["counts"]["resolved_on_time"] == 1
    assert c["rates"]["resolution_rate"] == round(2 / 3, 4) and c["rates"]["on_time_rate"] == 0.5


def test_response_rate_by_accepting_or_resolving_in_time(world):
    """响应率: accepted (or resolved without accepting) within the response limit. One accepted at 2 h,
    one accepted at 30 h (limit 24 h), one resolved at 5 h unaccepted, one untouched → 2/4."""
    a, b, c, _ = world.case(), world.case(), world.case(), world.case()
    world.at(2).emit(a, "case.accepted", cadre="lj-c002", unit=VILLAGE)
    world.at(5).resolve(c)
    world.at(30).emit(b, "case.accepted", cadre="lj-c002", unit=VILLAGE)
    assert world.card("lj-c002")["rates"]["response_rate"] == 0.5
    assert world.card("longjiang", "county")["rates"]["response_rate"] == 0.5


def test_satisfaction_goes_to_the_resolver_with_the_basically_satisfied_weight(world, engine):
    """Seed 001 满意率 (满意 + 基本满意 over rated); unreachable is not a rating. With weight 1:
    3 satisfied + 1 basic + 1 unsatisfied → 4/5 = 80%; with weight 0.5 → 3.5/5 = 70%."""
    cases = [world.case() for _ in range(6)]
    world.at(3)
    for case_id, rating in zip(cases, ["satisfied"] * 3 + ["basically_satisfied", "unsatisfied", "unreachable"]):
        world.resolve(case_id)
        world.rate(case_id, rating)
    card = world.card("lj-c002")
    assert card["rates"]["satisfaction_rate"] == 0.8 and card["counts"]["unreachable"] == 1
    assert world.card(VILLAGE, "unit")["rates"]["satisfaction_rate"] == 0.8
    rules_mod.publish(world.ledger, rules_mod.validate_rules({"county": "longjiang", "basically_satisfied_weight": 0.5}),
                      "test")
    assert world.card("lj-c002")["rates"]["satisfaction_rate"] == 0.7


def test_flags_at_the_seed_thresholds(world):
    """Seed 001: 低于80%的实行"一票否决"; seed 004: 低于90%…取消年度考核评优资格, 低于70%…及时进行调整.
    8 ratings, 5 satisfied → 62.5%: all three flags; with 4 ratings (under min_ratings_to_flag 5) none."""
    cases = [world.case() for _ in range(8)]
    for i, case_id in enumerate(cases):
        world.at(3).resolve(case_id)
        world.rate(case_id, "satisfied" if i < 5 else "unsatisfied")
    flags = {f["flag"]: f for f in world.card("lj-c002")["flags"]}
    assert set(flags) == {"excellence_lost", "promotion_veto", "reassignment_review"}
    assert flags["promotion_veto"]["seed"] == "001" and "62.50% < 80%" in flags["promotion_veto"]["rule"]
    other = [world.case(unit=TOWNSHIP, cadre="lj-c006") for _ in range(4)]
    for case_id in other:
        world.resolve(case_id, TOWNSHIP, "lj-c006")
        world.rate(case_id, "unsatisfied")
    assert world.card("lj-c006")["flags"] == []


def test_escalation_charges_the_holder_and_credits_the_new_unit(world):
    """Seed 000: 不能就地解决的…上报; issue #7 §2: the holder when a deadline lapses is charged. The
    village lapses (overdue + automatic escalation), the township resolves: the village has 1
    received, 0 resolved, 1 overdue, 1 escalated away; the township 1 received, 1 resolved."""
    a = world.case()
    world.at(121).emit(a, "case.overdue", deadline="resolution", due=isoformat(T0 + timedelta(hours=120)),
                       holder_unit=VILLAGE, holder_cadre="lj-c002")
    world.emit(a, "case.escalated", from_unit=VILLAGE, from_tier="village", to_unit=TOWNSHIP, to_tier="township",
               to_cadre="lj-c006", reason="超期", automatic=True, policy_version=1,
               resolution_due=isoformat(T0 + timedelta(hours=300)))
    world.at(200).resolve(a, TOWNSHIP, "lj-c006")
    v, t = world.card("lj-c002"), world.card("lj-c006")
    assert (v["counts"]["received"], v["counts"]["resolved"], v["counts"]["overdue"], v["counts"]["escalated_overdue"]) == (1, 0, 1, 1)
    assert (t["counts"]["received"], t["counts"]["resolved"], t["counts"]["resolved_on_time"]) == (1, 1, 1)
    county_card = world.card("longjiang", "county")
    assert county_card["counts"]["received"] == 1 and county_card["counts"]["escalated_overdue"] == 1
    # 承诺期限兑现率 (seed 003): the village broke its promise, the township kept its own; the county's
    # promise to the resident lapsed, whoever resolved the case in the end
    assert (v["rates"]["on_time_rate"], t["rates"]["on_time_rate"], county_card["rates"]["on_time_rate"]) == (0.0, 1.0, 0.0)


def test_a_transfer_moves_the_work_but_not_the_deadline(world):
    """转办 (DESIGN glossary): both holders received it; only the resolver is credited; the county
    counts the case once. Resolved at 130 h against the kept 120 h limit: late."""
    a = world.case()
    world.at(1).emit(a, "case.transferred", from_unit=VILLAGE, to_unit="shanquan.pingan-station", to_cadre="lj-c003",
                     reason="属平安村", policy_version=1, resolution_due=isoformat(T0 + timedelta(hours=120)))
    world.at(130).resolve(a, "shanquan.pingan-station", "lj-c003")
    assert world.card("lj-c002")["counts"]["received"] == 1 and world.card("lj-c002")["counts"]["resolved"] == 0
    c3 = world.card("lj-c003")
    assert c3["counts"]["resolved"] == 1 and c3["counts"]["resolved_on_time"] == 0
    assert world.card("longjiang", "county")["counts"]["received"] == 1


def test_joint_handling_credits_the_lead_and_records_co_units(world):
    """会诊 (seed 004 共建单位会诊): the lead takes the resolution and the rating; each co-unit records a
    joint participation and nothing else."""
    a = world.case(unit=DEPT, cadre="lj-c011")
    world.emit(a, "case.joint_handling_started", lead_unit=DEPT, co_units=["dept.housing"], by="lj-c011")
    world.at(5).resolve(a, DEPT, "lj-c011")
    world.rate(a, "satisfied")
    assert world.card(DEPT, "unit")["counts"]["resolved"] == 1
    co = world.card("dept.housing", "unit")
    assert co["counts"]["joint_participation"] == 1 and co["counts"]["resolved"] == 0 and co["counts"]["satisfied"] == 0


def test_reopening_is_charged_to_the_rejected_resolver(world):
    """Seed 001's closed loop (回访): an unsatisfied rating reopens the case; the resolver is charged
    with the reopening and the unsatisfied rating. The new holding is the same case: counted once
    (issue #17 §4: a case counts once per subject per period)."""
    a = world.case()
    world.at(3).resolve(a)
    world.rate(a, "unsatisfied")
    world.emit(a, "case.reopened", reason="群众不满意")
    world.emit(a, "case.assigned", unit=VILLAGE, cadre="lj-c002", tier="village", policy_version=1, rule="t",
               response_due=isoformat(T0 + timedelta(hours=30)), resolution_due=isoformat(T0 + timedelta(hours=150)))
    world.at(20).resolve(a)
    world.rate(a, "satisfied")
    c = world.card("lj-c002")
    assert (c["counts"]["received"], c["counts"]["resolved"], c["counts"]["reopened"]) == (1, 1, 1)
    assert c["rates"]["satisfaction_rate"] == 0.5 and c["rates"]["resolution_rate"] == 1.0
    county_card = world.card("longjiang", "county")
    assert county_card["counts"]["received"] == 1 and county_card["counts"]["reopened"] == 1


def test_reopen_loop_in_qikeshu_adds_up_by_hand(world):
    """Issue #17 §4, computed by hand: in 七棵树镇 one case is resolved, rated unsatisfied, reopened,
    resolved, rated unsatisfied, reopened and resolved a third time, then rated satisfied; main showed
    the township received 1, resolved 3, resolution rate 3.0.
    By hand: received 1 case, resolved 1 case → 办结率 1/1; ratings 1 satisfied of 3 → 满意率 1/3;
    reopened 2 (events); the resolver lj-c005 alike; the county alike."""
    station = "qikeshu.qikeshu-station"
    a = world.case(township="qikeshu", unit=station, cadre="lj-c005")
    for round_, rating in enumerate(("unsatisfied", "unsatisfied", "satisfied")):
        world.at(3 + 10 * round_).resolve(a, station, "lj-c005")
        world.rate(a, rating)
        if rating == "unsatisfied":
            world.emit(a, "case.reopened", reason="群众不满意")
            world.emit(a, "case.assigned", unit=station, cadre="lj-c005", tier="village", policy_version=1, rule="t",
                       response_due=isoformat(T0 + timedelta(hours=200)),
                       resolution_due=isoformat(T0 + timedelta(hours=300)))
    for subject, kind in (("qikeshu", "township"), ("longjiang", "county"), ("lj-c005", "cadre"), (station, "unit")):
        card = world.card(subject, kind)
        counts = card["counts"]
        assert (counts["received"], counts["in_hand"], counts["resolved"], counts["reopened"]) == (1, 1, 1, 2), kind
        assert (counts["satisfied"], counts["unsatisfied"]) == (1, 2), kind
        assert card["rates"]["resolution_rate"] == 1.0 and card["rates"]["satisfaction_rate"] == round(1 / 3, 4), kind


def test_a_case_resolved_next_month_is_in_that_months_hand(world):
    """Issue #17 §4: received on 31 March (local), resolved on 1 April → March: 1 received, 0 resolved
    (0%); April: 0 received but 1 in hand, 1 resolved (100%), never 1 resolved over 0 received."""
    world.clock.set(datetime(2026, 3, 31, 8, tzinfo=timezone.utc))             # 16:00 on 31 March in 龙江县
    a = world.case()
    world.clock.set(datetime(2026, 3, 31, 16, 30, tzinfo=timezone.utc))        # 00:30 on 1 April in 龙江县
    world.resolve(a)
    for kind, subject in (("cadre", "lj-c002"), ("township", "heigang"), ("county", "longjiang")):
        march, april = world.card(subject, kind, "2026-03"), world.card(subject, kind, "2026-04")
        assert (march["counts"]["received"], march["counts"]["resolved"], march["rates"]["resolution_rate"]) == (1, 0, 0.0)
        assert (april["counts"]["received"], april["counts"]["in_hand"], april["counts"]["resolved"]) == (0, 1, 1)
        assert april["rates"]["resolution_rate"] == 1.0


def test_a_return_upheld_is_a_hand_off_and_one_overturned_still_charges(world):
    """Issue #18 §7: lj-c002 returns two cases as not theirs (退回). The supervisor re-dispatches one
    to 平安村 (upheld: handed_off, out of lj-c002's resolution denominator) and sends the other back
    to 靠山村 (overturned: return_overturned, still charged). lj-c002 resolves a third case.
    By hand: received 3, handed_off 1, in hand 2, resolved 1 → 办结率 1/2 (main: 1/3)."""
    upheld, overturned, own = world.case(), world.case(), world.case()
    for case_id in (upheld, overturned):
        world.at(1).emit(case_id, "case.returned", from_unit=VILLAGE, cadre="lj-c002", reason="不属本村")
    world.at(2).emit(upheld, "case.transferred", from_unit=VILLAGE, to_unit="shanquan.pingan-station",
                     to_cadre="lj-c003", reason="属平安村", policy_version=1, resolution_due=isoformat(T0 + timedelta(hours=120)))
    world.emit(overturned, "case.transferred", from_unit=VILLAGE, to_unit=VILLAGE, to_cadre="lj-c002",
               reason="属靠山村，退回不成立", policy_version=1, resolution_due=isoformat(T0 + timedelta(hours=120)))
    world.at(3).resolve(own)
    card = world.card("lj-c002")
    counts = card["counts"]
    assert (counts["received"], counts["handed_off"], counts["return_overturned"], counts["in_hand"],
            counts["resolved"]) == (3, 1, 1, 2, 1)
    assert card["rates"]["resolution_rate"] == 0.5
    assert world.card(VILLAGE, "unit")["counts"]["handed_off"] == 1
    assert world.card("lj-c003")["counts"]["received"] == 1
    assert world.card("heigang", "township")["counts"]["handed_off"] == 0      # the case stays in its township


def test_an_escalation_the_policy_requires_is_a_hand_off(world):
    """Issue #18 §7 (大事不出乡镇): category 401 (贷款及致富信息协调) starts at the township; a village
    cadre holding one escalates it by request: required, handed off. A 202 (roads, starts at the
    village) escalated by request is not required: still charged. By hand: received 2, handed_off 1,
    in hand 1, resolved 0."""
    required, optional = world.case(category="401"), world.case()
    for case_id in (required, optional):
        world.at(2).emit(case_id, "case.escalated", from_unit=VILLAGE, from_tier="village", to_unit=TOWNSHIP,
                         to_tier="township", to_cadre="lj-c006", reason="超出本级权限", automatic=False,
                         policy_version=1, resolution_due=isoformat(T0 + timedelta(hours=300)))
    counts = world.card("lj-c002")["counts"]
    assert (counts["received"], counts["handed_off"], counts["in_hand"], counts["resolved"]) == (2, 1, 1, 0)
    assert world.card("lj-c002")["rates"]["resolution_rate"] == 0.0
    assert world.card("lj-c006")["counts"]["received"] == 2


def test_solution_rate_from_the_residents_answer(world):
    """Issue #17 §3 (Beijing 12345's 解决率 beside 办结率): 3 resolved and rated; the resident says 2
    solved, 1 not; a rating without the answer (an old client) counts for 满意率 only → 解决率 2/3."""
    cases = [world.case() for _ in range(4)]
    world.at(3)
    for case_id, solved in zip(cases, (True, True, False, None)):
        world.resolve(case_id)
        extra = {} if solved is None else {"solved": solved}
        world.emit(case_id, "case.followed_up", rating="satisfied", via="call", **extra)
    card = world.card("lj-c002")
    assert (card["counts"]["solved"], card["counts"]["unsolved"]) == (2, 1)
    assert card["rates"]["solution_rate"] == round(2 / 3, 4) and card["rates"]["resolution_rate"] == 1.0
    assert world.card("longjiang", "county")["rates"]["solution_rate"] == round(2 / 3, 4)
    world.follower.catch_up()
    with world.ledger.engine.connect() as conn:
        why = explain(conn, "longjiang", "2026-03", "cadre", "lj-c002", "solution_rate")
    assert len(why["numerator"]) == 2 and len(why["denominator"]) == 3


def test_a_roster_cadre_without_recorded_work_appears_flagged(world):
    """Issue #17 §4: lj-c004 (东升村 village cadre) has no recorded work in March: listed with zero
    visits against the pro-rata quota (50/12 days), flagged; an id not on the roster stays unknown."""
    world.case()
    world.follower.catch_up()
    with world.ledger.engine.connect() as conn:
        one = scorecards(conn, "longjiang", "2026-03", "cadre", "lj-c004")["cards"]
        every = scorecards(conn, "longjiang", "2026-03", "cadre")["cards"]
        unknown = scorecards(conn, "longjiang", "2026-03", "cadre", "lj-c999")["cards"]
    assert unknown == []
    assert len(every) == 13 and [c["subject"] for c in every] == sorted(c["subject"] for c in every)
    card = one[0]
    assert card["name"] == "驻村干部丁" and card["unit_name"] == "东升村代理代办服务站"
    assert card["visits"]["days"] == 0 and card["visits"]["quota_days_for_period"] == round(50 / 12, 1)
    assert [f["flag"] for f in card["flags"]] == ["no_recorded_work"] and card["ranked"] is False


def test_a_duplicate_counts_once(world):
    """Issue #4 §5 / #7 §2: a report merged into an open case is never assigned and counts nowhere."""
    a = world.case()
    world.emit("dup", "case.reported", county="longjiang", tracking_no="LJ-20260302-9999", channel="hotline",
               category="202", kind="help", urgency="normal", summary="同一处路面塌陷",
               location={"township": "heigang", "village": None, "hamlet": None},
               reporter={"subject": None, "name_masked": "", "phone_masked": ""}, reported_at=isoformat(T0))
    world.emit("dup", "case.merged", into_case_id=a, reason="repeat")
    assert world.card("longjiang", "county")["counts"]["received"] == 1
    assert world.card("heigang", "township")["counts"]["received"] == 1


def test_on_site_resolution(world):
    """Seed 004 驻点干部现场办结: resolutions marked on site are counted for the resolver."""
    a, b = world.case(), world.case()
    world.at(1).resolve(a, on_site=True)
    world.resolve(b)
    assert world.card("lj-c002")["counts"]["resolved_on_site"] == 1


def test_field_visit_days_against_the_seed_quota(world):
    """Seed 000: 村级和社区干部每年进屯入户时间不少于50天 — a village cadre's visit days (one per day,
    however many hamlets) against 50 a year; seed 001 每月联系包联户: households summed."""
    for day, hamlet, households in (("2026-03-03", "heigang.kaoshan.3", 4), ("2026-03-03", "heigang.kaoshan.11", 2),
                                    ("2026-03-10", "heigang.kaoshan.3", 5)):
        world.ledger.append("cadre-lj-c002", [NewEvent("visit.logged", {"cadre": "lj-c002", "county": "longjiang",
                                                                        "day": day, "hamlet": hamlet,
                                                                        "households": households},
                                                       Metadata("cadre:lj-c002", "longjiang"))])
    month = world.card("lj-c002")
    assert month["visits"]["days"] == 2 and month["visits"]["households"] == 11
    year = world.card("lj-c002", period="2026")
    assert year["visits"]["quota_days_per_year"] == 50 and year["visits"]["days"] == 2
    assert year["visits"]["households_target"] == 80 * 12


def test_periods_half_year_and_year_sum_their_months(world):
    a = world.case()
    world.at(3).resolve(a)
    world.clock.set(datetime(2026, 7, 1, 2, tzinfo=timezone.utc))
    b = world.case()
    world.resolve(b)
    assert world.card("lj-c002", period="2026-H1")["counts"]["resolved"] == 1
    assert world.card("lj-c002", period="2026-H2")["counts"]["resolved"] == 1
    assert world.card("lj-c002", period="2026")["counts"]["resolved"] == 2


def test_rankings_top_per_level_and_minimum_volume(world):
    """Seed 004: 对测评情况进行排名，评选表彰年度"十佳" — ranked by composite score per level, only
    cadres with at least min_cases_to_rank (5) cases."""
    for cadre, unit, good in (("lj-c002", VILLAGE, 5), ("lj-c003", "shanquan.pingan-station", 3)):
        for i in range(6):
            case_id = world.case(unit=unit, cadre=cadre)
            world.at(3).resolve(case_id, unit, cadre)
            world.rate(case_id, "satisfied" if i < good else "unsatisfied")
    for _ in range(2):                                 # under the minimum volume
        world.resolve(world.case(unit=TOWNSHIP, cadre="lj-c006"), TOWNSHIP, "lj-c006")
    world.follower.catch_up()
    with world.ledger.engine.connect() as conn:
        ranked = rankings(conn, "longjiang", "2026-03")
    assert [r["cadre"] for r in ranked["levels"]["village"]] == ["lj-c002", "lj-c003"]
    assert ranked["levels"]["township"] == []
    assert ranked["top"]["village"][0]["rank"] == 1


def test_explanation_lists_the_cases_and_positions_behind_a_figure(world):
    """Issue #7 §4: why is my satisfaction 50%? The two ratings, with case ids and ledger positions."""
    a, b = world.case(), world.case()
    for case_id, rating in ((a, "satisfied"), (b, "unsatisfied")):
        world.at(3).resolve(case_id)
        world.rate(case_id, rating)
    world.follower.catch_up()
    with world.ledger.engine.connect() as conn:
        why = explain(conn, "longjiang", "2026-03", "cadre", "lj-c002", "satisfaction_rate")
    assert why["value"] == 0.5
    assert {r["case_id"] for r in why["numerator"]} == {a}
    assert {r["case_id"] for r in why["denominator"]} == {a, b}
    positions = {e.position for e in world.ledger.iter_all() if e.type == "case.followed_up"}
    assert {r["position"] for r in why["denominator"]} == positions
