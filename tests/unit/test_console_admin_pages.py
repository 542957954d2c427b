"""The admin's account page (issue #14 §7): the county's console accounts listed, added (with a
temporary password shown once), disabled (ending their sessions), enabled and reset — by an admin of
that county only; form errors name the field in words."""
from __future__ import annotations

import re

import pytest
from werkzeug.test import Client

from minqing import access
from minqing.clock import ManualClock
from minqing.db import make_engine
from services.console import accounts, sessions, web
from services.console.api import Answer
from services.console.app import Console

CATALOGUE = {"county": "longjiang", "name": "龙江县", "categories": [], "townships": [],
             "units": [{"code": "heigang-centre", "name": "黑岗乡便民服务中心", "tier": "township"}]}


class FakeApi:
    def call(self, method, path, **kwargs):
        return Answer(200, CATALOGUE) if path == "/api/v1/counties/longjiang" else Answer(404, {})


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'console.db'}")
    for md in (access.metadata_obj, accounts.metadata_obj, sessions.metadata_obj):
        md.create_all(engine)
    yield engine
    engine.dispose()


def _client(engine, username, role, county="longjiang"):
    clock = ManualClock()
    account = accounts.add(engine, username, "first-password", role, county, clock=clock)
    accounts.change_password(engine, account.account_id, "first-password", "second-password")
    client = Client(Console(engine, FakeApi(), clock))
    token = sessions.open_session(engine, accounts.login(engine, username, "second-password", clock), clock)
    client.set_cookie(web.SESSION_COOKIE, token)
    page = client.get("/console/admin/accounts")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True))
    return client, csrf.group(1) if csrf else None, token


def test_an_admin_adds_disables_enables_and_resets_accounts_of_the_county(engine):
    admin, csrf, _ = _client(engine, "admin1", "admin")
    bad = admin.post("/console/admin/accounts", data={"csrf": csrf, "what": "add", "username": "", "role": "cadre"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and '<a href="#f-username">用户名</a>：必填' in html
    assert '<a href="#f-role">角色</a>：请从列表中选择' in html
    added = admin.post("/console/admin/accounts", data={"csrf": csrf, "what": "add", "username": "zhao",
                                                        "role": "supervisor", "unit": "heigang-centre"})
    html = added.get_data(as_text=True)
    assert added.status_code == 201 and "zhao 的临时密码" in html
    temporary = re.search(r'<p class="big"><code>([^<]+)</code>', html).group(1)
    zhao = accounts.login(engine, "zhao", temporary, ManualClock())
    assert zhao.must_change_password and (zhao.role, zhao.unit) == ("supervisor", "heigang-centre")
    again = admin.post("/console/admin/accounts", data={"csrf": csrf, "what": "add", "username": "zhao",
                                                        "role": "operator"})
    assert again.status_code == 422 and "此用户名已被使用" in again.get_data(as_text=True)
    token = sessions.open_session(engine, zhao, ManualClock())
    done = admin.post("/console/admin/accounts", data={"csrf": csrf, "what": "disable", "username": "zhao"})
    assert done.status_code == 303 and sessions.load(engine, token, ManualClock()) is None   # its sessions end
    with pytest.raises(accounts.LoginRefused):
        accounts.login(engine, "zhao", temporary, ManualClock())
    admin.post("/console/admin/accounts", data={"csrf": csrf, "what": "enable", "username": "zhao"})
    reset = admin.post("/console/admin/accounts", data={"csrf": csrf, "what": "reset", "username": "zhao"})
    fresh = re.search(r'<p class="big"><code>([^<]+)</code>', reset.get_data(as_text=True)).group(1)
    assert fresh != temporary and accounts.login(engine, "zhao", fresh, ManualClock()).must_change_password
    listing = admin.get("/console/admin/accounts").get_data(as_text=True)
    assert "zhao" in listing and fresh not in listing                   # a password is shown once only


def test_only_an_admin_of_the_county_manages_its_accounts(engine):
    for role in ("operator", "supervisor", "auditor"):
        client, _, _ = _client(engine, f"u-{role}", role)
        assert client.get("/console/admin/accounts").status_code == 403, role
    _client(engine, "far-op", "operator", county="heping")
    admin, csrf, _ = _client(engine, "admin2", "admin")
    assert "far-op" not in admin.get("/console/admin/accounts").get_data(as_text=True)
    assert admin.post("/console/admin/accounts", data={"csrf": csrf, "what": "reset",
                                                       "username": "far-op"}).status_code == 404
    assert admin.post("/console/admin/accounts", data={"what": "disable", "username": "u-operator"}).status_code == 403


def test_the_admin_sees_and_removes_webhook_subscriptions_through_the_api(engine):
    admin, csrf, _ = _client(engine, "admin3", "admin")
    calls = []
    sub = {"id": "s-1", "county": "longjiang", "url": "https://x.example/<hook>", "types": ["case.*"],
           "description": None, "status": "active", "position": 7, "delivered": 7, "failures": 2,
           "next_attempt_at": "", "last_error": "HTTP 500", "created_at": ""}

    def call(method, path, **kwargs):
        calls.append((method, path))
        if path == "/api/v1/subscriptions":
            return Answer(200, {"subscriptions": [sub]})
        return Answer(204, {}) if method == "DELETE" else Answer(200, CATALOGUE)
    admin.application.api.call = call
    html = admin.get("/console/admin/subscriptions").get_data(as_text=True)
    assert "https://x.example/&lt;hook&gt;" in html and "HTTP 500" in html and "连续失败：2" in html
    done = admin.post("/console/admin/subscriptions", data={"csrf": csrf, "id": "s-1"})
    assert done.status_code == 303 and ("DELETE", "/api/v1/subscriptions/s-1") in calls
    operator, _, _ = _client(engine, "op9", "operator")
    assert operator.get("/console/admin/subscriptions").status_code == 403


def test_the_admin_issues_lists_and_revokes_machine_tokens_but_not_peoples_sessions(engine):
    admin, csrf, session_token = _client(engine, "admin4", "admin")
    bad = admin.post("/console/admin/tokens", data={"csrf": csrf, "what": "issue", "role": "cadre", "label": "",
                                                    "days": "0"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and '<a href="#f-role">角色</a>：请从列表中选择' in html
    assert '<a href="#f-label">用途说明</a>：必填' in html and '<a href="#f-days">有效天数</a>' in html
    issued = admin.post("/console/admin/tokens", data={"csrf": csrf, "what": "issue", "role": "integrator",
                                                       "label": "12345 热线平台<对接>", "days": "30"})
    html = issued.get_data(as_text=True)
    assert issued.status_code == 201 and "12345 热线平台&lt;对接&gt;" in html
    token = re.search(r'<code class="hash">(mq_[^<]+)</code>', html).group(1)
    token_id = token[3:15]
    from minqing.db import read_transaction
    with read_transaction(engine) as conn:
        assert access.authenticate(conn, f"Bearer {token}", ManualClock()).role == "integrator"
    people = session_token.split(".")[0].removeprefix("mq_")
    listing = admin.get("/console/admin/tokens").get_data(as_text=True)
    assert token_id in listing and people not in listing and token not in listing     # shown once; sessions apart
    done = admin.post("/console/admin/tokens", data={"csrf": csrf, "what": "revoke", "token_id": token_id})
    assert done.status_code == 303 and "已吊销" in admin.get("/console/admin/tokens").get_data(as_text=True)
    assert admin.post("/console/admin/tokens", data={"csrf": csrf, "what": "revoke",
                                                     "token_id": people}).status_code == 404
