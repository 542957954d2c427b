"""The admin's new routes on the real stack (issue #14 §1, §7), over HTTP through the gateway: county
policy versions and the diff between two (intake), parked events per service and their retry (every
service), the console's pages over both, and the optional second factor at login (the console's
accounts table as migration 0002 left it on PostgreSQL).

On the session's shared stack: 和平县 gets a second policy version here (one hamlet more: nothing any
other test relies on changes); no event is parked on purpose (a parked event turns the stack's
/health degraded for every other test), so the retry answers what it answers for a position with
nothing parked — 409 — and another county's position — 404; the retry itself runs on a real ledger
in tests/unit/test_parked_api.py."""
from __future__ import annotations

import copy
import re
from datetime import timedelta

import pytest

from tests.e2e.test_console import PAGE_BUDGET, Browser, _keep_screenshots, _screenshots
from tests.support import fresh_phone

PASSWORD = "temporary-pw-2026"
SERVICES = ("intake", "routing", "notify", "assessment")
NEW_HAMLET = {"code": "hp-town.east.1", "name": "东村一组"}


def _engine(stack):
    from minqing.db import make_engine
    return make_engine(stack.env["MINQING_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1))


@pytest.fixture(scope="module")
def heping_v2(stack):
    """和平县's latest published policy with one hamlet more, published as the next version (as `minqing
    county load` publishes it); returns (older version, newer version)."""
    from minqing import county
    from minqing.ledger import Ledger
    from services.intake import policy_versions
    engine = _engine(stack)
    try:
        ledger = Ledger(engine)
        latest = policy_versions.published(ledger, "heping")[-1]
        policy = copy.deepcopy(latest.data["policy"])
        village = policy["townships"][0]["villages"][0]
        if NEW_HAMLET not in village["hamlets"]:
            village["hamlets"].append(dict(NEW_HAMLET))
        version, _ = county.publish(ledger, policy, "admin:e2e")
    finally:
        engine.dispose()
    return latest.data["version"], version


@pytest.fixture(scope="module")
def people(stack):
    """Console accounts made in-process (a CLI process costs seconds; the CLI is exercised by test_console.py)."""
    from services.console import accounts
    engine = _engine(stack)
    try:
        for username, role, county in (("adm-heping", "admin", "heping"), ("totp-op", "operator", "heping")):
            accounts.add(engine, username, PASSWORD, role, county)
    finally:
        engine.dispose()


def test_policy_versions_and_their_diff_over_http(stack, heping_v2):
    older, newer = heping_v2
    admin = stack.issue("admin", "heping")
    code, body = stack.request("GET", "/api/v1/counties/heping/policy/versions", token=admin)
    assert code == 200 and body["versions"][0]["version"] == newer and body["timezone"] == "Asia/Shanghai"
    assert body["versions"][0]["actor"] == "admin:e2e" and body["versions"][0]["published_at"].endswith("+08:00")
    code, diff = stack.request("GET", f"/api/v1/counties/heping/policy/diff?from={older}&to={newer}", token=admin)
    assert code == 200, diff
    assert diff["sections"] == ["townships"] and [c["change"] for c in diff["changes"]] == ["added"]
    assert diff["changes"][0]["path"] == ["townships", "hp-town", "villages", "hp-town.east", "hamlets", "hp-town.east.1"]
    assert diff["changes"][0]["new"] == NEW_HAMLET
    # the auditor reads them too; other roles are refused, another county's admin finds nothing
    assert stack.request("GET", "/api/v1/counties/heping/policy/versions", token=stack.issue("auditor", "heping"))[0] == 200
    assert stack.request("GET", "/api/v1/counties/heping/policy/versions", token=stack.issue("operator", "heping"))[0] == 403
    assert stack.request("GET", "/api/v1/counties/heping/policy/versions", token=stack.issue("admin"))[0] == 404
    # bad input: each field named
    code, body = stack.request("GET", "/api/v1/counties/heping/policy/diff", token=admin)
    assert code == 422 and set(body["error"]["fields"]) == {"from", "to"}
    code, body = stack.request("GET", f"/api/v1/counties/heping/policy/diff?from=1&to={newer + 5}", token=admin)
    assert code == 422 and set(body["error"]["fields"]) == {"to"}


def test_parked_events_per_service_over_http(stack):
    admin = stack.issue("admin")
    code, case = stack.request("POST", "/api/v1/cases", {
        "county": "heping", "channel": "hotline", "category": "202", "summary": "搁置事件路由测试",
        "location": {"township": "hp-town", "village": "hp-town.east"},
        "reporter": {"name": "钱七", "phone": fresh_phone()}}, token=stack.issue("operator", "heping"))
    assert code == 201
    code, mine = stack.request("POST", "/api/v1/cases", {
        "county": "longjiang", "channel": "hotline", "category": "202", "summary": "搁置事件路由测试",
        "location": {"township": "heigang", "village": "heigang.kaoshan"},
        "reporter": {"name": "钱七", "phone": fresh_phone()}})
    assert code == 201
    positions = {}
    for who, token, case_id in (("heping", stack.issue("auditor", "heping"), case["case_id"]),
                                ("longjiang", stack.issue("auditor"), mine["case_id"])):
        code, view = stack.request("GET", f"/api/v1/cases/{case_id}", token=token)
        positions[who] = view["history"][0]["position"]
    for service in SERVICES:
        code, body = stack.request("GET", f"/api/v1/parked/{service}", token=admin)
        assert code == 200 and body["service"] == service and body["county"] == "longjiang", body
        assert isinstance(body["events"], list)
        code, body = stack.request("POST", f"/api/v1/parked/{service}/{positions['longjiang']}/retry", {}, token=admin)
        assert (code, body["error"]["code"]) == (409, "not_parked"), body
        code, body = stack.request("POST", f"/api/v1/parked/{service}/{positions['heping']}/retry", {}, token=admin)
        assert code == 404, body                              # another county's event: as if it did not exist
        assert stack.request("POST", f"/api/v1/parked/{service}/x1/retry", {}, token=admin)[0] == 404
        assert stack.request("GET", f"/api/v1/parked/{service}", token=stack.issue("auditor"))[0] == 403


def test_the_admin_pages_and_a_login_with_a_code(stack, heping_v2, people, tmp_path):
    from services.console import totp
    older, newer = heping_v2
    admin = Browser(stack.base)
    html = admin.login("adm-heping", PASSWORD, "heping-admin-pw-1")
    status, html, _ = admin.open(f"/console/admin/policy?from={older}&to={newer}", keep="admin-policy")
    assert status == 200 and f"第 {older} 版 → 第 {newer} 版的变化" in html, html
    assert "新增：乡镇、村、屯 › hp-town 和平镇 › 村 › hp-town.east 东村 › 屯 › hp-town.east.1 东村一组" in html, html
    status, html, _ = admin.open("/console/admin/parked", keep="admin-parked")
    assert status == 200 and "受理服务" in html and "考核服务" in html
    # a retry of one of the county's positions with nothing parked: the API's 409, in words
    code, case = stack.request("POST", "/api/v1/cases", {
        "county": "heping", "channel": "hotline", "category": "202", "summary": "控制台重试测试",
        "location": {"township": "hp-town", "village": "hp-town.east"},
        "reporter": {"name": "孙八", "phone": fresh_phone()}}, token=stack.issue("operator", "heping"))
    position = stack.request("GET", f"/api/v1/cases/{case['case_id']}",
                             token=stack.issue("auditor", "heping"))[1]["history"][0]["position"]
    status, html, url = admin.open("/console/admin/parked", {"csrf": Browser.csrf(html), "service": "routing",
                                                             "position": str(position)})
    assert status == 200 and f"第 {position} 条已不在搁置列表中" in html, html

    # the second factor: enrol (the secret shown once), then the login asks for the code
    person = Browser(stack.base)
    person.login("totp-op", PASSWORD, "second-factor-pw-1")
    status, html, _ = person.open("/console/totp", keep="totp-enrol")
    secret = re.search(r'id="totp-text">([A-Z2-7]+)<', html).group(1)
    status, html, url = person.open("/console/totp", {"csrf": Browser.csrf(html), "secret": secret,
                                                      "code": totp.code_at(secret, _now())})
    assert status == 200 and "两步验证已开启" in html and secret not in html, html
    again = Browser(stack.base)
    _, html, _ = again.open("/console/login")
    status, html, url = again.open("/console/login", {"csrf": Browser.csrf(html), "username": "totp-op",
                                                      "password": "second-factor-pw-1"}, keep="login-code")
    assert 'name="code"' in html and url.endswith("/console/login"), html
    pending = re.search(r'name="pending" value="([^"]+)"', html).group(1)
    # the enrolment took this step's code; the next step's is within the window of one step either side
    next_code = totp.code_at(secret, _now() + timedelta(seconds=totp.STEP_SECONDS))
    status, html, url = again.open("/console/login/code", {"csrf": Browser.csrf(html), "pending": pending,
                                                           "code": next_code})
    assert status == 200 and url.endswith("/console/report"), (status, url)
    replayed = Browser(stack.base)                       # the same code again: refused
    _, html, _ = replayed.open("/console/login")
    _, html, _ = replayed.open("/console/login", {"csrf": Browser.csrf(html), "username": "totp-op",
                                                  "password": "second-factor-pw-1"})
    status, html, _ = replayed.open("/console/login/code", {"csrf": Browser.csrf(html), "pending": re.search(
        r'name="pending" value="([^"]+)"', html).group(1), "code": next_code})
    assert status == 401 and "已使用过" in html
    pages = {k: v for k, v in {**admin.pages, **person.pages, **again.pages}.items()
             if k.startswith(("admin-", "totp-", "login-code"))}
    import urllib.request
    static = sum(len(urllib.request.urlopen(stack.base + f"/static/console.{ext}").read()) for ext in ("css", "js"))
    heavy = {k: len(v.encode()) for k, v in pages.items() if len(v.encode()) + static > PAGE_BUDGET}
    assert not heavy, f"over the page budget of {PAGE_BUDGET} bytes with CSS and JS: {heavy}"
    _keep_screenshots(_screenshots(stack, pages, tmp_path))


def _now():
    from minqing.clock import real_now
    return real_now()
