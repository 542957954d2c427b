"""The admin's policy-versions and parked-events pages (issue #14 §7) on a fake API: the diff in plain
words, a refused version named as the field, the parked events per service with a retry button that
posts the API's retry with CSRF, and the roles (admins; auditors read policy versions too)."""
from __future__ import annotations

import re

import pytest
from werkzeug.test import Client

from minqing.clock import ManualClock
from services.console import accounts, sessions, web
from services.console.api import Answer
from services.console.app import Console
from tests.unit.test_console_units import engine  # noqa: F401  (the fixture: console tables on SQLite)

VERSIONS = {"county": "longjiang", "timezone": "Asia/Shanghai", "versions": [
    {"version": 2, "digest": "b" * 64, "position": 40, "published_at": "2026-11-30T09:00:00+08:00", "actor": "admin:li",
     "name": "龙江县"},
    {"version": 1, "digest": "a" * 64, "position": 1, "published_at": "2026-01-05T08:00:00+08:00", "actor": "admin:wang",
     "name": "龙江县"}]}
DIFF = {"county": "longjiang", "timezone": "Asia/Shanghai", "from": VERSIONS["versions"][1], "to": VERSIONS["versions"][0],
        "sections": ["escalation", "cadres"], "changes": [
            {"section": "escalation", "path": ["escalation", "warn_before_hours", "response"],
             "labels": ["escalation", "warn_before_hours", "response"], "change": "changed", "old": 4, "new": 2},
            {"section": "cadres", "path": ["cadres", "lj-c099"], "labels": ["cadres", "lj-c099 <b>新</b>干部"],
             "change": "added", "new": {"id": "lj-c099", "name": "<b>新</b>干部", "unit": "u1", "role": "驻村"}}]}
PARKED = {"service": "routing", "consumer": "routing.assignments", "county": "longjiang", "events": [
    {"position": 17, "event_id": "e-17", "type": "case.reported", "stream": "case-c1", "state": "parked",
     "held_behind": None, "error": "ValueError: unknown tier 'x'", "parked_at": "2026-11-30T01:00:00.000000Z"},
    {"position": 19, "event_id": "e-19", "type": "case.accepted", "stream": "case-c1", "state": "held",
     "held_behind": 17, "error": "held behind position 17 of its stream", "parked_at": "2026-11-30T01:00:01.000000Z"}]}


class FakeApi:
    def __init__(self, answers: dict):
        self.answers, self.calls = answers, []

    def call(self, method, path, **kwargs):
        self.calls.append((method, path, kwargs))
        return self.answers.get((method, path), Answer(200, {"service": path.rsplit("/", 1)[-1], "consumer": "x",
                                                             "county": "longjiang", "events": []})
                                if path.startswith("/api/v1/parked/") and method == "GET"
                                else Answer(404, {"error": {"code": "not_found"}}))


def _client(engine, api, role="admin", username="admin1"):
    clock = ManualClock()
    account = accounts.add(engine, username, "first-password", role, "longjiang",
                           unit="u1" if role == "cadre" else None, cadre="lj-c002" if role == "cadre" else None,
                           clock=clock)
    accounts.change_password(engine, account.account_id, "first-password", "second-password")
    client = Client(Console(engine, api, clock))
    client.set_cookie(web.SESSION_COOKIE, sessions.open_session(
        engine, accounts.login(engine, username, "second-password", clock), clock))
    return client


def test_the_policy_page_lists_versions_and_words_the_latest_change(engine):
    api = FakeApi({("GET", "/api/v1/counties/longjiang/policy/versions"): Answer(200, VERSIONS),
                   ("GET", "/api/v1/counties/longjiang/policy/diff"): Answer(200, DIFF)})
    page = _client(engine, api).get("/console/admin/policy")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert api.calls[-1][2]["query"] == {"from": "1", "to": "2"}           # the latest two, by default
    assert "第 1 版 → 第 2 版的变化" in html and "共 2 处变化，涉及：预警、升级与督办、干部名册" in html
    assert "修改：预警、升级与督办 › 提前预警（小时） › 受理" in html and "4 → 2" in html
    assert "新增：干部名册 › lj-c099 &lt;b&gt;新&lt;/b&gt;干部" in html and "<b>新</b>" not in html   # escaped
    assert "admin:wang" in html and "2026-11-30 09:00" in html


def test_a_version_the_api_refuses_is_named_as_the_field(engine):
    api = FakeApi({("GET", "/api/v1/counties/longjiang/policy/versions"): Answer(200, VERSIONS),
                   ("GET", "/api/v1/counties/longjiang/policy/diff"): Answer(422, {"error": {
                       "code": "invalid_fields", "fields": {"to": ["not a published version (1 to 2)"]}}})})
    page = _client(engine, api).get("/console/admin/policy?from=1&to=9")
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and '<a href="#f-to">新版本</a>' in html and "not a published version" in html


def test_auditors_read_policy_versions_and_other_roles_are_refused(engine):
    api = FakeApi({("GET", "/api/v1/counties/longjiang/policy/versions"): Answer(200, VERSIONS),
                   ("GET", "/api/v1/counties/longjiang/policy/diff"): Answer(200, DIFF)})
    assert _client(engine, api, "auditor", "aud1").get("/console/admin/policy").status_code == 200
    for role in ("operator", "supervisor", "cadre"):
        assert _client(engine, api, role, f"{role}1").get("/console/admin/policy").status_code == 403
    assert _client(engine, api, "auditor", "aud2").get("/console/admin/parked").status_code == 403


def test_parked_events_per_service_and_a_retry_posted_with_csrf(engine):
    api = FakeApi({("GET", "/api/v1/parked/routing"): Answer(200, PARKED),
                   ("POST", "/api/v1/parked/routing/19/retry"): Answer(200, {
                       "service": "routing", "consumer": "routing.assignments", "position": 19, "left": 0,
                       "outcomes": [{"position": 17, "outcome": "applied"}, {"position": 19, "outcome": "applied"}]})})
    admin = _client(engine, api)
    page = admin.get("/console/admin/parked")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "派单与督办服务" in html and "账本第 17 条" in html
    assert "ValueError: unknown tier" in html and "等待第 17 条" in html and html.count(">重试</button>") == 2
    assert "受理服务" in html and "无。" in html                      # a service with nothing parked says so
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    refused = admin.post("/console/admin/parked", data={"csrf": "forged", "service": "routing", "position": "19"})
    assert refused.status_code == 403 and not [c for c in api.calls if c[0] == "POST"]
    done = admin.post("/console/admin/parked", data={"csrf": csrf, "service": "routing", "position": "19"})
    assert done.status_code == 303 and "outcome=applied" in done.headers["Location"]
    assert ("POST", "/api/v1/parked/routing/19/retry") in [c[:2] for c in api.calls]
    html = admin.get(done.headers["Location"]).get_data(as_text=True)
    assert "第 19 条所在流已重新处理成功" in html
    api.answers[("POST", "/api/v1/parked/routing/19/retry")] = Answer(409, {"error": {"code": "not_parked"}})
    again = admin.post("/console/admin/parked", data={"csrf": csrf, "service": "routing", "position": "19"})
    assert "outcome=gone" in again.headers["Location"]
    assert admin.post("/console/admin/parked", data={"csrf": csrf, "service": "nosuch",
                                                     "position": "1"}).status_code == 404


def test_the_board_takes_its_at_risk_window_from_the_countys_policy(engine):
    """An acceptance due in 3 hours is at risk in a county that warns 4 hours ahead (龙江县), not in one
    that warns 2 hours ahead (the policy schema's default, 紫阳县)."""
    from tests.unit.test_console_units import _row
    rows = [_row("soon", "assigned", "2026-01-05T12:00:00.000000Z", "2026-01-12T09:00:00.000000Z")]
    catalogue = {"categories": [], "townships": [{"code": "heigang", "name": "黑岗乡", "villages": []}],
                 "units": [{"code": "u1", "name": "靠山村代理代办服务站", "tier": "village"}]}
    for hours, shown in ((4, True), (2, False)):
        api = FakeApi({("GET", "/api/v1/worklist"): Answer(200, {"cases": rows, "total": 1, "warn_before_hours": {
                           "response": hours, "resolution": 24}}),
                       ("GET", "/api/v1/counties/longjiang"): Answer(200, catalogue)})
        client = _client(engine, api, "supervisor", f"s-{hours}")       # the manual clock: 2026-01-05 09:00Z
        html = client.get("/console/board").get_data(as_text=True)
        assert ("LJ-soon" in html) is shown, hours
        assert f"待接单的诉求在接单期限前 {hours} 小时内" in html         # the rule stated with the county's hours
