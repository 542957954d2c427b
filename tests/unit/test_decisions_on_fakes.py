"""The decision functions on fakes, no database (issue #13): every cadre and supervisor action,
the timers, attribution and the scorecard figures, each deciding from a case folded out of events
held in memory and the demo county's policy (deploy/counties/longjiang.yaml)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from minqing import access
from minqing.casefile import fold
from minqing.clock import ManualClock, isoformat
from minqing.county import CountyPolicy, read_policy_file
from minqing.ledger import Metadata, NewEvent
from minqing.ledger_memory import MemoryLedger
from services.assessment import attribution, rules as assessment_rules, scorecards
from services.routing import actions, timers
from services.routing.assignment import decide_assignment

LONGJIANG = Path(__file__).resolve().parents[2] / "deploy" / "counties" / "longjiang.yaml"
AT = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)        # a Monday, 09:00 in Longjiang
META = Metadata(actor="test:fakes", county="longjiang")
VILLAGE = access.Principal("t1", "cadre", "longjiang", "heigang.kaoshan-station", "lj-c002")
STRANGER = access.Principal("t2", "cadre", "longjiang", "shanquan.pingan-station", "lj-c003")
SUPERVISOR = access.Principal("t3", "supervisor", "longjiang", "heigang-centre", None)


@pytest.fixture(scope="module")
def policy():
    return CountyPolicy(read_policy_file(LONGJIANG), 3)


def _reported(case_id="c1", category="201"):
    return {"case_id": case_id, "county": "longjiang", "tracking_no": "LJ-20261123-0001", "category": category,
            "channel": "hotline", "kind": "help", "urgency": "normal", "summary": "路面塌陷",
            "location": {"township": "heigang", "village": "heigang.kaoshan", "hamlet": None},
            "reporter": {"subject": None, "name_masked": "", "phone_masked": ""}, "reported_at": isoformat(AT)}


def _case(policy, *more, category="201"):
    """A case reported at AT and assigned by the assignment rule, then `more` (type, data) events,
    recorded in a MemoryLedger (so every event passes the contract) and folded."""
    ledger = MemoryLedger(ManualClock(AT))
    reported = _reported(category=category)
    assigned = decide_assignment(policy, reported, AT)
    ledger.append("case-c1", [NewEvent("case.reported", reported, META),
                              NewEvent("case.assigned", {"case_id": "c1", **assigned}, META)])
    for type_, data in more:
        ledger.append("case-c1", [NewEvent(type_, {"case_id": "c1", **data}, META)])
    events = ledger.read_stream("case-c1")
    return fold("c1", events), events


def _decide(make, principal, command, case, policy):
    return make(principal, command)(case, policy, {})


# ---- every cadre and supervisor action ------------------------------------------------------------

def test_the_holding_cadre_accepts_once(policy):
    case, _ = _case(policy)
    assert (case.status, case.unit) == ("assigned", "heigang.kaoshan-station")
    out = _decide(actions.accept, VILLAGE, {}, case, policy)
    assert out == [("case.accepted", {"case_id": "c1", "cadre": "lj-c002", "unit": "heigang.kaoshan-station"})]
    accepted, _ = _case(policy, *out)
    with pytest.raises(actions.Conflict) as info:
        _decide(actions.accept, VILLAGE, {}, accepted, policy)
    assert info.value.code == "already_accepted"


def test_a_cadre_of_another_unit_cannot_act(policy):
    case, _ = _case(policy)
    for make, command in ((actions.accept, {}), (actions.resolve, {"on_site": False, "resolution": "好了"}),
                          (actions.return_case, {"reason": "不归我们"})):
        with pytest.raises(actions.Conflict) as info:
            _decide(make, STRANGER, command, case, policy)
        assert info.value.code == "not_holder"


def test_notes_and_resolutions_are_masked(policy):
    case, _ = _case(policy)
    out = _decide(actions.note, VILLAGE, {"note": "已联系 13812345678", "reply_to": None}, case, policy)
    assert out[0][0] == "case.progress_noted" and "13812345678" not in out[0][1]["note"]
    out = _decide(actions.resolve, VILLAGE, {"on_site": True, "resolution": "已修复，电话13812345678"}, case, policy)
    assert out[0][0] == "case.resolved" and out[0][1]["on_site"] is True and "13812345678" not in out[0][1]["resolution"]


def test_a_written_reply_is_only_owed_under_supervision(policy):
    case, _ = _case(policy)
    with pytest.raises(actions.Conflict) as info:
        _decide(actions.note, VILLAGE, {"note": "回复", "reply_to": "x"}, case, policy)
    assert info.value.code == "no_reply_owed"


def test_a_cadre_resolves_in_their_own_name(policy):
    case, _ = _case(policy)
    with pytest.raises(actions.ApiError) as info:
        _decide(actions.resolve, VILLAGE, {"cadre": "lj-c009", "on_site": False, "resolution": "好了"}, case, policy)
    assert info.value.status == 403


def test_escalation_moves_up_one_tier_with_a_reason(policy):
    """Seed 000: "需要村级解决的限时解决，村级解决不了的及时上报乡镇" — the village escalates to the township."""
    case, _ = _case(policy)
    out = actions.escalate(VILLAGE, {"reason": "需要乡镇协调"}, ManualClock(AT + timedelta(hours=2)))(case, policy, {})
    assert out[0][0] == "case.escalated"
    data = out[0][1]
    assert (data["from_tier"], data["to_tier"], data["automatic"]) == ("village", "township", False)


def test_transfer_within_the_tier_and_supervisors_redispatch(policy):
    case, _ = _case(policy)
    with pytest.raises(actions.ApiError) as info:
        actions.transfer(VILLAGE, {"to_unit": "no-such-unit", "reason": "不归我们"}, ManualClock(AT))(case, policy, {})
    assert info.value.status == 422 and "to_unit" in info.value.fields
    returned, _ = _case(policy, ("case.returned", {"from_unit": "heigang.kaoshan-station", "cadre": "lj-c002",
                                                   "reason": "不归我们"}))
    assert returned.status == "returned"
    out = actions.transfer(SUPERVISOR, {"to_unit": "heigang-centre", "reason": "改派"}, ManualClock(AT))(returned, policy, {})
    assert out[0][0] == "case.transferred" and out[0][1]["to_unit"] == "heigang-centre"


def test_joint_handling_needs_other_units(policy):
    case, _ = _case(policy)
    with pytest.raises(actions.ApiError) as info:
        _decide(actions.joint, VILLAGE, {"co_units": [case.unit]}, case, policy)
    assert info.value.status == 422
    out = _decide(actions.joint, VILLAGE, {"co_units": ["dept.housing"]}, case, policy)
    assert out == [("case.joint_handling_started", {"case_id": "c1", "lead_unit": case.unit,
                                                    "co_units": ["dept.housing"], "by": VILLAGE.actor})]


def test_supervision_pressure_only_rises(policy):
    """Seed 001's graded pressure: 催办 → 督办 → 挂牌督办; a supervision asks for a written reply."""
    case, _ = _case(policy)
    clock = ManualClock(AT)
    out = actions.supervise(SUPERVISOR, {"level": "supervise", "note": "请说明", "reply_within_hours": None}, clock)(case, policy, {})
    assert out[0][0] == "case.supervised" and out[0][1]["reply_due"] == isoformat(AT + timedelta(hours=24))
    supervised, _ = _case(policy, *out)
    with pytest.raises(actions.Conflict) as info:
        actions.supervise(SUPERVISOR, {"level": "chase", "note": "快", "reply_within_hours": None}, clock)(supervised, policy, {})
    assert info.value.code == "pressure_only_rises"


# ---- the timers -----------------------------------------------------------------------------------

def test_timers_warn_then_mark_overdue_then_escalate(policy):
    """longjiang.yaml: warn 4 h before the response deadline; at the resolution deadline the case is
    overdue and, `on_resolution_overdue: escalate`, moves up a tier (限时办结)."""
    case, _ = _case(policy)
    response_due = datetime.fromisoformat(case.response_due.replace("Z", "+00:00"))
    resolution_due = datetime.fromisoformat(case.resolution_due.replace("Z", "+00:00"))
    assert timers.fire(policy, case, AT) == []
    warned = [s.type for s in timers.fire(policy, case, response_due - timedelta(hours=3))]
    assert warned == ["case.deadline_warned"]
    late = [s.type for s in timers.fire(policy, case, resolution_due + timedelta(minutes=1))]
    assert "case.overdue" in late and "case.escalated" in late


# ---- attribution and scorecards -------------------------------------------------------------------

def test_attribution_credits_the_holder_and_charges_a_lapse(policy):
    """Issue #7 §2: the holder receives the case; resolving in time credits the resolver; a lapsed
    deadline is charged to the holder when it lapsed."""
    case, events = _case(policy, ("case.accepted", {"cadre": "lj-c002", "unit": "heigang.kaoshan-station"}),
                         ("case.resolved", {"cadre": "lj-c002", "unit": "heigang.kaoshan-station", "on_site": True,
                                            "resolution": "已修复"}))
    state, facts = attribution.CaseState("c1"), []
    for event in events:
        state, more = attribution.attribute(state, event, policy.doc)
        facts += more
    got = {(f.metric, f.kind, f.subject) for f in facts}
    assert {("received", "cadre", "lj-c002"), ("responded_on_time", "cadre", "lj-c002"),
            ("resolved_on_time", "cadre", "lj-c002"), ("resolved_on_site", "unit", "heigang.kaoshan-station"),
            ("received", "township", "heigang"), ("received", "county", "longjiang")} <= got
    overdue = NewEvent("case.overdue", {"case_id": "c1", "deadline": "resolution", "due": case.resolution_due,
                                        "holder_unit": "u9", "holder_cadre": "c9"}, META)
    recorded = MemoryLedger().append("case-c1", [overdue])[0]
    _, charged = attribution.attribute(state, recorded, policy.doc)
    # a lapsed resolution deadline is also a broken promise (seed 003: 实行承诺服务，限时办结), for the holder
    # and for the case's township and county
    assert {(f.metric, f.subject) for f in charged} == {("overdue", "c9"), ("overdue", "u9"),
                                                       ("deadline_lapsed", "c9"), ("deadline_lapsed", "u9"),
                                                       ("deadline_lapsed", "heigang"), ("deadline_lapsed", "longjiang")}


def test_scorecard_rates_and_the_seeds_thresholds():
    """Seed 001: 满意率低于80%的实行"一票否决"; seed 004: 低于90%取消评优资格, 低于70%予以调整."""
    rules = assessment_rules.default_rules("longjiang")
    counts = {"received": 10, "in_hand": 10, "response_base": 10, "responded_on_time": 9, "resolved": 8,
              "resolved_on_time": 6, "promised": 8, "kept": 6, "satisfied": 6, "basically_satisfied": 2,
              "unsatisfied": 2}
    card = scorecards.card("unit", "u1", counts, rules, None, 1)
    assert card["rates"]["response_rate"] == 0.9 and card["rates"]["on_time_rate"] == 0.75
    w = rules["basically_satisfied_weight"]
    assert card["rates"]["satisfaction_rate"] == round((6 + 2 * w) / 10, 4)
    flagged = {f["flag"] for f in scorecards.flags(counts, 0.75, rules)}
    assert flagged == {"excellence_lost", "promotion_veto"}
    assert {f["flag"] for f in scorecards.flags(counts, 0.65, rules)} == {"excellence_lost", "promotion_veto",
                                                                           "reassignment_review"}
    assert scorecards.flags(counts, 0.95, rules) == []
