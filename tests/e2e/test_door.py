"""Bad input at the door (issue #12) on the real stack (PostgreSQL, RabbitMQ): NUL, control
characters, unpaired surrogates, deep nesting, huge numbers and unsafe links are a clear 4xx naming
every bad field, in every service's bodies; nothing is written, and the pipeline keeps assigning."""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.test_case_flow import _events_for, _wait_case, report
from tests.support import Watcher

VILLAGE = ("cadre", "longjiang", "heigang.kaoshan-station", "lj-c002")


def _raw(body: dict) -> bytes:
    """JSON with escapes kept as written (\\u0000, \\ud800), as a hostile client sends them."""
    return json.dumps(body).encode()


def _reports(stack_db) -> int:
    engine = create_engine(stack_db)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM ledger_events WHERE type = 'case.reported'")).scalar()
    finally:
        engine.dispose()


@pytest.mark.parametrize("name, raw, status, named", [
    ("nul in summary", _raw(report(summary="a\u0000b")), 422, {"summary"}),
    ("escape in details", _raw(report(details="x\u001b[31m")), 422, {"details"}),
    ("C1 in category", _raw(report(category="202\u0085")), 422, {"category"}),
    ("line break in a name", _raw(report(reporter={"name": "张\n三", "phone": "13800138000"})), 422, {"reporter.name"}),
    ("surrogate in a name", _raw(report(reporter={"name": "a\ud800b", "phone": "13800138000"})), 422,
     {"reporter.name"}),
    ("surrogate in summary", _raw(report(summary="\udfff")), 422, {"summary"}),
    ("non-character", _raw(report(summary="a\ufffe")), 422, {"summary"}),
    ("huge float", _raw(report())[:-1] + b', "location": {"township": "heigang", "coordinates": {"lat": 1e400, "lon": 1}}}',
     422, {"location.coordinates.lat"}),
    ("5000 digits", _raw(report())[:-1] + b', "urgency": ' + b"9" * 5000 + b"}", 422, {"urgency"}),
    ("NaN", _raw(report())[:-1] + b', "urgency": NaN}', 422, {"urgency"}),
    ("1000 deep", _raw(report())[:-1] + b', "details": ' + b"[" * 1000 + b"]" * 1000 + b"}", 400, {"body"}),
    ("javascript link", _raw(report(attachments=[{"ref": "https://files.example.cn/1.jpg"},
                                                 {"ref": "javascript:alert(document.cookie)"}])), 422,
     {"attachments.1.ref"}),
    ("data link", _raw(report(attachments=[{"ref": "data:text/html,<script>alert(1)</script>"}])), 422,
     {"attachments.0.ref"}),
    ("file link", _raw(report(attachments=[{"ref": "file:///etc/passwd"}])), 422, {"attachments.0.ref"}),
    ("every bad field at once", _raw(report(channel="carrier_pigeon", category="999",
                                            location={"township": "黑岗乡", "village": "月球村"})), 422,
     {"channel", "category", "location.village"}),
])
def test_a_bad_report_is_refused_naming_every_field_and_nothing_is_written(stack, stack_db, name, raw, status, named):
    before = _reports(stack_db)
    code, answer = stack.request("POST", "/api/v1/cases", raw=raw)
    assert code == status, answer
    assert set(answer["error"]["fields"]) == named, answer
    assert _reports(stack_db) == before


@pytest.fixture(scope="module")
def cadre(stack):
    return stack.issue(*VILLAGE)


@pytest.mark.parametrize("action, raw, named", [
    ("resolve", b'{"resolution": "\\u5df2\\u4fee\\u590d\\u0000"}', "resolution"),
    ("escalate", b'{"reason": "\\ud800"}', "reason"),
    ("notes", b'{"note": "a\\u0000b"}', "note"),
    ("notes", b'{"note": ' + b"[" * 1000 + b"]" * 1000 + b"}", "body"),
    ("supervise", b'{"level": "supervise", "note": "x", "reply_within_hours": 1e400}', "reply_within_hours"),
])
def test_routing_actions_refuse_bad_text_and_the_case_moves_on(stack, cadre, action, raw, named):
    code, case = stack.request("POST", "/api/v1/cases", report())
    assert code == 201, case
    _wait_case(stack, case["case_id"], "assigned")
    token = stack.issue("supervisor", "longjiang", "heigang-centre", None) if action == "supervise" else cadre
    code, answer = stack.request("POST", f"/api/v1/cases/{case['case_id']}/{action}", raw=raw, token=token)
    assert code in (400, 422) and named in answer["error"]["fields"], answer
    code, answer = stack.request("POST", f"/api/v1/cases/{case['case_id']}/resolve", {"resolution": "已修复"},
                                 token=cadre)
    assert code == 200, answer


def test_visits_and_follow_ups_refuse_bad_text(stack, cadre):
    code, answer = stack.request("POST", "/api/v1/visits", raw=b'{"day": "2026-01-01", "hamlet": "x\\u0000", '
                                 b'"households": 3}', token=cadre)
    assert code == 422 and "hamlet" in answer["error"]["fields"], answer
    code, answer = stack.request("POST", "/api/v1/cases/00000000-0000-4000-8000-000000000000/follow-up",
                                 raw=b'{"rating": "satisfied\\u0000"}')
    assert code in (404, 422), answer


def test_a_nul_in_the_query_string_is_refused(stack):
    code, answer = stack.request("GET", "/api/v1/worklist?status=%01", token=stack.issue(*VILLAGE))
    assert code in (400, 422), answer


def test_after_refused_reports_every_good_report_is_assigned(stack):
    """The repro of issue #12 §1: a NUL used to be accepted, then park routing on PostgreSQL."""
    assert stack.request("POST", "/api/v1/cases", raw=_raw(report(summary="a\u0000b")))[0] == 422
    code, case = stack.request("POST", "/api/v1/cases", report(summary="村口路灯不亮"))
    assert code == 201
    assert _wait_case(stack, case["case_id"], "assigned")["status"] == "assigned"


def test_an_email_address_in_free_text_reaches_subscribers_masked(stack, rabbit):
    watcher = Watcher(rabbit.uri, keys=("longjiang.case.*",))
    try:
        code, case = stack.request("POST", "/api/v1/cases", report(
            summary="请回邮件 wang.wu@example.cn", details="或者 ｗａｎｇ＠ｅｘａｍｐｌｅ．ｃｎ 以及 13812345678@qq.com",
            location={"township": "黑岗乡", "village": "靠山村", "address": "联系 li@example.com"}))
        assert code == 201, case
        found = _events_for(watcher, case["case_id"], {"case.reported"})
    finally:
        watcher.close()
    published = json.dumps(found["case.reported"], ensure_ascii=False)
    assert "wang.wu@" not in published and "ｗａｎｇ" not in published and "13812345678" not in published
    assert "li@example" not in published
    data = found["case.reported"]["data"]
    assert data["summary"] == "请回邮件 w***@example.cn" and "1***@qq.com" in data["details"]


def _form_post(stack, form: bytes):
    req = urllib.request.Request(stack.base + "/open311/v2/requests.json", data=form, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_open311_forms_obey_the_same_rule(stack):
    code, answer = _form_post(stack, b"jurisdiction_id=long%00jiang&service_code=202&description=a%00b")
    assert code == 400 and any(e["description"].startswith("description") for e in answer), answer
    assert any(e["description"].startswith("jurisdiction_id") for e in answer), answer
    key = stack.issue("integrator")
    form = urllib.parse.urlencode({"jurisdiction_id": "longjiang", "api_key": key, "service_code": "202",
                                   "address_string": "靠山村", "attribute[township]": "heigang",
                                   "media_url": "javascript:alert(1)"}).encode()
    code, answer = _form_post(stack, form)
    assert code == 400 and any(e["description"].startswith("media_url") for e in answer), answer
