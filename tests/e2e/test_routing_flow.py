"""Routing on the real stack (issue #5 §4, §5, §7): cadres' and supervisors' actions over HTTP, each
checked against the case's current state; worklists; the routing explanation; the running sweep."""
from __future__ import annotations

import time

import pytest

from tests.e2e.test_case_flow import _wait_case, report
from tests.support import fresh_phone

VILLAGE = ("cadre", "longjiang", "heigang.kaoshan-station", "lj-c002")
TOWNSHIP = ("cadre", "longjiang", "heigang-centre", "lj-c006")


@pytest.fixture(scope="module")
def tokens(stack):
    return {"village": stack.issue(*VILLAGE), "township": stack.issue(*TOWNSHIP),
            "supervisor": stack.issue("supervisor", "longjiang", "heigang-centre", None),
            "operator": stack.issue("operator")}


def _new_case(stack, tokens, **overrides) -> str:
    code, case = stack.request("POST", "/api/v1/cases", report(**overrides), token=tokens["operator"])
    assert code == 201, case
    _wait_case(stack, case["case_id"], "assigned")
    return case["case_id"]


def _post(stack, token, case_id, action, body=None):
    return stack.request("POST", f"/api/v1/cases/{case_id}/{action}", body if body is not None else {}, token=token)


def test_accept_note_escalate_and_resolve_each_checked_against_the_current_state(stack, tokens):
    case_id = _new_case(stack, tokens)
    code, body = _post(stack, tokens["village"], case_id, "accept")
    assert code == 200 and body["events"] == ["case.accepted"]
    code, body = _post(stack, tokens["village"], case_id, "accept")
    assert code == 409 and body["error"]["code"] == "already_accepted"
    assert _post(stack, tokens["village"], case_id, "notes", {"note": "已到现场查看，联系13800138000"})[0] == 200

    code, listed = stack.request("GET", "/api/v1/worklist?limit=500", token=tokens["village"])
    assert code == 200 and case_id in [c["case_id"] for c in listed["cases"]]       # assigned: the row exists
    assert all(c["unit"] == "heigang.kaoshan-station" for c in listed["cases"])

    code, body = _post(stack, tokens["village"], case_id, "escalate", {"reason": "水毁严重，需乡镇调机械"})
    assert code == 200 and body["events"] == ["case.escalated"]
    code, body = _post(stack, tokens["village"], case_id, "resolve", {"resolution": "已修复"})
    assert code == 409 and body["error"]["code"] == "not_holder"        # the village no longer holds it
    code, body = _post(stack, tokens["township"], case_id, "resolve", {"resolution": "已调机械修复", "on_site": True})
    assert code == 200 and body["events"] == ["case.resolved"]
    code, body = _post(stack, tokens["township"], case_id, "resolve", {"resolution": "再次办结"})
    assert code == 409 and "resolved" in body["error"]["message"]

    code, why = stack.request("GET", f"/api/v1/cases/{case_id}/routing", token=tokens["operator"])
    assert code == 200 and why["status"] == "resolved" and why["first_contact"] == "lj-c002"
    kinds = [d["type"] for d in why["decisions"]]
    assert kinds == ["case.assigned", "case.accepted", "case.escalated", "case.resolved"]
    assert "靠山村代理代办服务站" in why["decisions"][0]["words"] and "policy version" in why["decisions"][0]["rule"]
    assert "13800138000" not in str(why)
    code, why_en = stack.request("GET", f"/api/v1/cases/{case_id}/routing?lang=en", token=tokens["operator"])
    assert code == 200 and why_en["decisions"][2]["words"].startswith("escalated at the cadre's request")


def test_a_returned_case_waits_for_a_supervisor_to_dispatch_it_again(stack, tokens):
    case_id = _new_case(stack, tokens)
    code, body = _post(stack, tokens["village"], case_id, "return", {"reason": "属乡镇审批事项"})
    assert code == 200 and body["events"] == ["case.returned"]
    deadline = time.monotonic() + 20          # the worklist follows the ledger: eventually, not at once
    while time.monotonic() < deadline:
        code, listed = stack.request("GET", "/api/v1/worklist?status=returned", token=tokens["supervisor"])
        if code == 200 and case_id in [c["case_id"] for c in listed["cases"]]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the returned case never reached the supervisor's worklist: {listed}")
    assert _post(stack, tokens["village"], case_id, "accept")[0] == 409
    code, body = _post(stack, tokens["supervisor"], case_id, "transfer",
                       {"to_unit": "heigang-centre", "reason": "改派乡镇中心"})
    assert code == 200 and body["events"] == ["case.transferred"]
    case = _wait_case(stack, case_id, "assigned")
    assert case["assignment"]["unit"] == "heigang-centre" and case["assignment"]["tier"] == "township"


def test_supervision_requires_a_written_reply_and_only_rises(stack, tokens):
    case_id = _new_case(stack, tokens)
    code, body = _post(stack, tokens["supervisor"], case_id, "supervise", {"level": "supervise", "note": "请三日内书面回复"})
    assert code == 200 and body["events"] == ["case.supervised"]
    code, body = _post(stack, tokens["supervisor"], case_id, "supervise", {"level": "chase", "note": "催办"})
    assert code == 409 and body["error"]["code"] == "pressure_only_rises"
    code, body = _post(stack, tokens["supervisor"], _new_case(stack, tokens), "supervise",
                       {"level": "chase", "note": "催办", "reply_within_hours": 4})
    assert code == 422 and set(body["error"]["fields"]) == {"reply_within_hours"}
    code, why = stack.request("GET", f"/api/v1/cases/{case_id}/routing", token=tokens["operator"])
    assert why["current"]["pressure"] == "supervise" and why["current"]["reply_due"]
    assert _post(stack, tokens["village"], case_id, "notes", {"note": "已安排施工", "reply_to": "supervise"})[0] == 200
    code, why = stack.request("GET", f"/api/v1/cases/{case_id}/routing", token=tokens["operator"])
    assert why["current"]["reply_due"] is None


@pytest.mark.parametrize("action, body, field, status", [
    ("transfer", {"to_unit": "no-such-unit", "reason": "x"}, "to_unit", 422),
    ("transfer", {"to_unit": "heigang-centre", "reason": "越级"}, "to_unit", 422),     # a cadre stays within the tier
    ("escalate", {}, "reason", 422),
    ("escalate", {"reason": "   "}, "reason", 422),
    ("joint", {"co_units": ["nowhere"]}, "co_units", 422),
    ("notes", {"note": "回复", "reply_to": "supervise"}, None, 409),                    # nothing awaits a reply
    ("resolve", {"resolution": 42}, "resolution", 422),
])
def test_bad_action_input_names_the_field_and_changes_nothing(stack, tokens, action, body, field, status):
    case_id = _new_case(stack, tokens)

    def case_events():      # notify records its deliveries on the case too, whenever they happen
        history = stack.request("GET", f"/api/v1/cases/{case_id}", token=tokens["operator"])[1]["history"]
        return [h["type"] for h in history if not h["type"].startswith("notification.")]

    before = case_events()
    code, answer = _post(stack, tokens["village"], case_id, action, body)
    assert code == status, answer
    if field:
        assert field in answer["error"]["fields"], answer
    assert case_events() == before


def test_a_body_that_is_not_json_is_refused(stack, tokens):
    case_id = _new_case(stack, tokens)
    code, body = stack.request("POST", f"/api/v1/cases/{case_id}/escalate", raw=b"reason=x", token=tokens["village"])
    assert code == 400 and body["error"]["code"] == "invalid_json"


def test_the_running_sweep_warns_before_a_deadline(stack):
    """和平县's 道路抢修 must be accepted within 1 hour and is warned 1 hour ahead: the routing
    service's timer sweep (every second in this stack) appends the warning unprompted."""
    operator = stack.issue("operator", "heping")
    code, case = stack.request("POST", "/api/v1/cases", {
        "county": "heping", "channel": "hotline", "category": "203", "summary": "道路塌陷",
        "location": {"township": "hp-town", "village": "hp-town.east"},
        "reporter": {"name": "李四", "phone": fresh_phone()}}, token=operator)
    assert code == 201, case
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = stack.request("GET", f"/api/v1/cases/{case['case_id']}", token=operator)[1]
        if "case.deadline_warned" in [h["type"] for h in body["history"]]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no warning was appended: {body['history']}")
    code, why = stack.request("GET", f"/api/v1/cases/{case['case_id']}/routing", token=operator)
    assert [t["kind"] for t in why["pending_timers"]][:1] == ["response_overdue"]


def test_other_services_act_over_rpc_with_the_same_checks(stack, tokens):
    """Issue #5 §4: actions over RPC between services, through the real broker, with the same state
    and scope checks as over HTTP. Issue #13: the caller presents a bearer token, never a principal
    of its own making; RPC goes through the same access decision as HTTP."""
    from nameko.standalone.rpc import ClusterRpcProxy
    case_id = _new_case(stack, tokens)
    village = tokens["village"]
    stranger = stack.issue("cadre", "longjiang", "shanquan.pingan-station", "lj-c003")
    forged = {"role": "cadre", "county": "longjiang", "unit": "heigang.kaoshan-station", "cadre": "lj-c002"}
    with ClusterRpcProxy({"AMQP_URI": stack.env["MINQING_AMQP_URI"]}, timeout=30) as cluster:
        assert cluster.routing.act(forged, case_id, "accept", {})["code"] == 401     # a principal is not a token
        assert cluster.routing.act("mq_000000000000.guess", case_id, "accept", {})["code"] == 401
        assert cluster.routing.act(tokens["operator"], case_id, "accept", {})["code"] == 403
        assert cluster.routing.act(stranger, case_id, "accept", {})["code"] == 404
        assert cluster.routing.explain_case(stranger, case_id)["code"] == 404
        assert cluster.routing.explain_case(None, case_id)["code"] == 401
        done = cluster.routing.act(village, case_id, "accept", {})
        assert done["code"] == 200 and done["events"] == ["case.accepted"] and done["status"] == "accepted"
        again = cluster.routing.act(village, case_id, "accept", {})
        assert again["code"] == 409 and again["error"]["code"] == "already_accepted"
        bad = cluster.routing.act(village, case_id, "escalate", {"reason": ""})
        assert bad["code"] == 422 and "reason" in bad["error"]["fields"]
        unknown = cluster.routing.act(village, case_id, "dance", {})
        assert unknown["code"] == 422 and "action" in unknown["error"]["fields"]
        why = cluster.routing.explain_case(village, case_id)
        assert why["code"] == 200
        assert [d["type"] for d in why["decisions"]] == ["case.assigned", "case.accepted"]
