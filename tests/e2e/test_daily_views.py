"""What people see on the real stack (issue #18): the case view shows what was done, by whom and
when in the county's time (#18.4); the resident's tracking view is in local time (#18.1a); the 回访
queue lists delivered cases waiting for a call (#18.5); routing warns, without failing, when open
deadlines run past the calendar the policy knows (#18.3)."""
from __future__ import annotations

import time

from tests.support import fresh_phone

LOCAL = "+08:00"


def _wait(stack, case_id, statuses, token, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = stack.request("GET", f"/api/v1/cases/{case_id}", token=token)
        if code == 200 and body["status"] in statuses:
            return body
        time.sleep(0.2)
    raise AssertionError(f"case {case_id} did not reach {statuses}: {body}")


def test_what_was_done_is_visible_and_the_delivered_case_waits_in_the_follow_up_queue(stack):
    operator = stack.issue("operator", "heping")
    cadre = stack.issue("cadre", "heping", unit="hp-town.east-station", cadre="hp-c001")
    supervisor = stack.issue("supervisor", "heping", "hp-town-centre", None)
    code, made = stack.request("POST", "/api/v1/cases", {
        "county": "heping", "channel": "hotline", "category": "202", "summary": "东村路面塌陷",
        "location": {"township": "hp-town", "village": "hp-town.east"},
        "reporter": {"name": "测试居民", "phone": fresh_phone()}}, token=operator)
    assert code == 201, made
    case_id = made["case_id"]
    _wait(stack, case_id, {"assigned"}, operator)

    code, health = stack.request("GET", "/health", token=None)
    assert code == 200 and health["status"] == "ok", health         # a warning never fails the stack
    calendar = health["services"]["routing"]["checks"]["calendar"]
    assert calendar["status"] == "warn" and calendar["counties"]["heping"]["code"] == "calendar_ends"   # no calendar
    code, listed = stack.request("GET", "/api/v1/worklist", token=operator)
    assert code == 200 and listed["as_of"].endswith(LOCAL)
    assert [w["code"] for w in listed["warnings"]] == ["calendar_ends"]
    mine = next(c for c in listed["cases"] if c["case_id"] == case_id)
    assert mine["resolution_due"].endswith(LOCAL)

    assert stack.request("POST", f"/api/v1/cases/{case_id}/accept", {}, token=cadre)[0] == 200
    code, body = stack.request("POST", f"/api/v1/cases/{case_id}/supervise", {"level": "supervise", "note": "请三日内书面答复"},
                               token=supervisor)
    assert code == 200, body
    code, body = stack.request("POST", f"/api/v1/cases/{case_id}/notes",
                               {"note": "已约施工队，村民电话13812345678", "reply_to": "supervise"}, token=cadre)
    assert code == 200, body
    code, body = stack.request("POST", f"/api/v1/cases/{case_id}/resolve", {"resolution": "已组织抢修，路面恢复通行"},
                               token=cadre)
    assert code == 200, body
    view = _wait(stack, case_id, {"delivered", "followed_up"}, operator)

    assert view["reported_at"].endswith(LOCAL) and view["registered_at"].endswith(LOCAL)
    steps = {s["type"]: s for s in view["history"]}
    assert all(s["at"].endswith(LOCAL) and "年" in s["when"] for s in view["history"])
    resolved = steps["case.resolved"]
    assert resolved["what"]["resolution"] == "已组织抢修，路面恢复通行"
    assert resolved["by"] == "cadre:hp-c001" and resolved["by_name"] == "村干部甲"
    reply = steps["case.progress_noted"]
    assert reply["what"]["reply_to"] == "supervise" and "138****5678" in reply["what"]["note"]
    assert "13812345678" not in str(view)
    assert steps["case.supervised"]["what"]["note"] == "请三日内书面答复"
    assert steps["case.supervised"]["what"]["reply_due"].endswith(LOCAL)

    code, why = stack.request("GET", f"/api/v1/cases/{case_id}/routing", token=operator)    # #18.1: local here too
    assert code == 200 and why["timezone"] == "Asia/Shanghai" and why["decisions"], why
    assert all(d["at"].endswith(LOCAL) for d in why["decisions"]) and "年" in why["decisions"][0]["words"]
    code, reads = stack.request("GET", f"/api/v1/access-log?case_id={case_id}", token=stack.issue("auditor", "heping"))
    assert code == 200 and reads["reads"] and all(r["at"].endswith(LOCAL) for r in reads["reads"]), reads

    code, tracked = stack.request("GET", f"/api/v1/track/{made['tracking_no']}?pin={made['pin']}", token=None)
    assert code == 200 and tracked["reported_at"].endswith(LOCAL)
    assert all(h["at"].endswith(LOCAL) for h in tracked["history"])

    # heping asks at once (after_minutes 0): the delivered case is due for its 回访 call
    code, queue = stack.request("GET", "/api/v1/follow-ups?state=all", token=operator)
    assert code == 200, queue
    waiting = next(f for f in queue["follow_ups"] if f["case_id"] == case_id)
    assert waiting["state"] in ("due", "overdue") and waiting["delivered_at"].endswith(LOCAL)
    assert waiting["since_delivery_minutes"] >= 0 and isinstance(waiting["attempts"], int)
    assert waiting["resolution"] == "已组织抢修，路面恢复通行" and "****" in waiting["phone_masked"]
    code, due = stack.request("GET", "/api/v1/follow-ups?state=due", token=operator)
    assert code == 200 and case_id in {f["case_id"] for f in due["follow_ups"]}
    code, err = stack.request("GET", "/api/v1/follow-ups?state=soon", token=operator)
    assert code == 422 and "state" in err["error"]["fields"]
    code, err = stack.request("GET", "/api/v1/follow-ups?county=longjiang", token=operator)
    assert code == 403

    code, rated = stack.request("POST", f"/api/v1/cases/{case_id}/follow-up", {"rating": "1"}, token=operator)
    assert code == 201, rated

    def gone():
        return case_id not in {f["case_id"] for f in stack.request("GET", "/api/v1/follow-ups?state=all",
                                                                   token=operator)[1]["follow_ups"]}
    deadline = time.monotonic() + 20
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone()
    final = _wait(stack, case_id, {"followed_up"}, operator)
    rated_step = next(s for s in final["history"] if s["type"] == "case.followed_up")
    assert rated_step["what"]["rating"] == "satisfied"
