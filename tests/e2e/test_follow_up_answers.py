"""The 回访's two answers through the operator's API (issue #17 §3): whether the matter was actually
solved (解决率) beside the satisfaction rating (满意率). `solved` is optional for old clients; bad
values name the field and record nothing."""
from __future__ import annotations

from tests.e2e.test_notify_flow import case_events, wait_for
from tests.support import fresh_phone


def test_operator_records_solved_and_satisfaction(stack):
    operator = stack.issue("operator", "heping")
    code, made = stack.request("POST", "/api/v1/cases", {
        "county": "heping", "channel": "hotline", "category": "203", "summary": "东村路灯不亮",
        "location": {"township": "hp-town", "village": "hp-town.east"},
        "reporter": {"name": "测试居民", "phone": fresh_phone()}}, token=operator)
    assert code == 201, made
    case_id = made["case_id"]
    wait_for(lambda: any(e.type == "case.assigned" for e in case_events(stack, case_id)), what="the assignment")
    cadre = stack.issue("cadre", "heping", unit="hp-town.east-station", cadre="hp-c001")
    code, body = stack.request("POST", f"/api/v1/cases/{case_id}/resolve", {"resolution": "已更换灯泡"}, token=cadre)
    assert code == 200, body

    path = f"/api/v1/cases/{case_id}/follow-up"
    for bad in ({"rating": "unreachable", "solved": True}, {"rating": "1", "solved": "maybe"},
                {"rating": "9", "solved": "maybe"}):
        code, err = stack.request("POST", path, bad, token=operator)
        assert code == 422 and "solved" in err["error"]["fields"], err
    assert not [e for e in case_events(stack, case_id) if e.type == "case.followed_up"]

    code, rated = stack.request("POST", path, {"rating": "basically_satisfied", "solved": False}, token=operator)
    assert code == 201 and rated["solved"] is False and rated["rating"] == "basically_satisfied", rated
    recorded = [e for e in case_events(stack, case_id) if e.type == "case.followed_up"]
    assert len(recorded) == 1 and recorded[0].data["solved"] is False and recorded[0].data["via"] == "call"
