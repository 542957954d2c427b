"""The console's pure parts: passwords, lockout, sessions, the message catalogue, escaping and the
security headers — on an SQLite file, a manual clock and a fake API (no services)."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from werkzeug.test import Client

from minqing import access
from minqing.clock import ManualClock
from minqing.db import make_engine
from services.console import accounts, messages, sessions, web
from services.console.api import Answer
from services.console.app import Console

TEMPLATES = Path(web.HERE / "templates")


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'console.db'}")
    for md in (access.metadata_obj, accounts.metadata_obj, sessions.metadata_obj):
        md.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock():
    return ManualClock()


def test_password_hash_keeps_its_parameters_and_salt():
    stored = accounts.hash_password("correct horse battery")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2 ** 14, 8, 1) and len(salt) == 32
    assert accounts.check_password("correct horse battery", stored)
    assert not accounts.check_password("correct horse batterY", stored)
    assert accounts.hash_password("correct horse battery") != stored          # a fresh salt each time
    assert not accounts.check_password("x", "garbage")


def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(engine, clock):
    accounts.add(engine, "op1", "first-password", "operator", "longjiang", clock=clock)
    for _ in range(4):
        with pytest.raises(accounts.LoginRefused) as refused:
            accounts.login(engine, "op1", "wrong-password", clock)
        assert refused.value.reason == "wrong"
    with pytest.raises(accounts.LoginRefused) as refused:
        accounts.login(engine, "op1", "wrong-password", clock)
    assert (refused.value.reason, refused.value.minutes) == ("locked", 15)
    with pytest.raises(accounts.LoginRefused) as refused:       # even the right password, while locked
        accounts.login(engine, "op1", "first-password", clock)
    assert refused.value.reason == "locked"
    clock.advance(timedelta(minutes=15, seconds=1))
    assert accounts.login(engine, "op1", "first-password", clock).must_change_password


def test_unknown_and_disabled_accounts_answer_like_a_wrong_password(engine, clock):
    accounts.add(engine, "op2", "first-password", "operator", "longjiang", clock=clock)
    accounts.set_disabled(engine, "op2")
    for name in ("op2", "nobody"):
        with pytest.raises(accounts.LoginRefused) as refused:
            accounts.login(engine, name, "first-password", clock)
        assert refused.value.reason == "wrong"


def test_new_passwords_are_checked_and_cadres_need_a_unit(engine):
    with pytest.raises(accounts.AccountError) as err:
        accounts.add(engine, "op3", "short", "operator", "longjiang")
    assert err.value.field == "password"
    with pytest.raises(accounts.AccountError) as err:
        accounts.add(engine, "c1", "long enough pw", "cadre", "longjiang")
    assert err.value.field == "cadre"


def test_a_session_is_the_accounts_principal_and_ends_when_idle_or_disabled(engine, clock):
    account = accounts.add(engine, "c2", "first-password", "cadre", "longjiang", unit="u1", cadre="lj-c002",
                           clock=clock)
    token = sessions.open_session(engine, account, clock)
    session = sessions.load(engine, token, clock)
    assert session.account.cadre == "lj-c002"
    assert session.account.principal(session.token_id).actor == "cadre:lj-c002"
    clock.advance(sessions.IDLE + timedelta(seconds=1))
    assert sessions.load(engine, token, clock) is None
    token = sessions.open_session(engine, account, clock)
    accounts.set_disabled(engine, "c2")
    assert sessions.load(engine, token, clock) is None
    assert sessions.load(engine, "mq_0123456789ab.forged", clock) is None


def test_every_message_has_both_languages_and_templates_use_only_known_keys():
    for key, pair in messages.M.items():
        assert len(pair) == 2 and all(pair), key
    used = set()
    for path in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"\bt\('([a-z_.0-9]*[a-z0-9_])'[,)]", path.read_text()))
    assert used and used <= set(messages.M), used - set(messages.M)


class FakeApi:
    """Answers the console's API calls from canned bodies (the real ones are exercised in tests/e2e)."""

    def __init__(self, answers: dict):
        self.answers, self.calls = answers, []

    def call(self, method, path, **kwargs):
        self.calls.append((method, path, kwargs))
        return self.answers.get((method, path), Answer(404, {"error": {"code": "not_found"}}))


CASE = {"case_id": "c-1", "tracking_no": "LJ-20260105-0001", "county": "longjiang", "status": "assigned",
        "channel": "hotline", "category": "202", "summary": "<script>alert('x')</script>",
        "location": {"township": {"code": "heigang", "name": "黑岗乡"}},
        "assignment": {"tier": "village", "unit": "u1", "unit_name": "靠山村代理代办服务站", "cadre": "lj-c002",
                       "response_due": "2026-01-06T01:00:00.000000Z", "resolution_due": "2026-01-12T09:00:00.000000Z",
                       "policy_version": 1},
        "history": [{"position": 1, "version": 1, "type": "case.reported", "at": "2026-01-05T01:00:00.000000Z"}]}


def _logged_in(engine, clock, api):
    account = accounts.add(engine, "c3", "first-password", "cadre", "longjiang", unit="u1", cadre="lj-c002",
                           clock=clock)
    accounts.change_password(engine, account.account_id, "first-password", "second-password")
    account = accounts.login(engine, "c3", "second-password", clock)
    client = Client(Console(engine, api, clock))
    client.set_cookie(web.SESSION_COOKIE, sessions.open_session(engine, account, clock))
    return client


def test_pages_carry_the_security_headers_and_escape_what_people_typed(engine, clock):
    api = FakeApi({("GET", "/api/v1/cases/c-1"): Answer(200, CASE),
                   ("GET", "/api/v1/cases/c-1/routing"): Answer(200, {"decisions": [], "current": None})})
    client = _logged_in(engine, clock, api)
    page = client.get("/console/cases/c-1")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "<script>" not in re.sub(r'<script src="/static/console.js" defer></script>', "", html)   # no inline script
    for response in (page, client.get("/console/login"), client.get("/static/console.css"), client.get("/nope")):
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self'")
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_a_post_without_the_csrf_token_is_refused_and_nothing_is_sent(engine, clock):
    api = FakeApi({})
    client = _logged_in(engine, clock, api)
    refused = client.post("/console/cases/c-1/accept", data={"note": "x"})
    assert refused.status_code == 403 and api.calls == []


def test_anonymous_visitors_are_sent_to_the_login_page(engine, clock):
    client = Client(Console(engine, FakeApi({}), clock))
    for path in ("/console/", "/console/worklist", "/console/report", "/console/cases/c-1"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["Location"].endswith("/console/login"), path
    login = client.get("/console/login")
    assert "HttpOnly" in login.headers["Set-Cookie"] and "SameSite=Strict" in login.headers["Set-Cookie"]


def test_time_left_in_days_and_hours(clock):
    assert web.time_left("2026-01-06T12:00:00Z", clock.now(), "zh") == ("剩余 1 天 3 小时", False)
    assert web.time_left("2026-01-05T07:00:00Z", clock.now(), "en") == ("overdue by 0 d 2 h", True)
    assert web.time_left("2026-01-05T09:42:30Z", clock.now(), "zh") == ("剩余 42 分钟", False)
    assert web.time_left("2026-01-05T08:59:00Z", clock.now(), "en") == ("overdue by 1 min", True)


def test_demo_logins_only_on_the_embedded_default_kept_private_and_remade_when_missing(tmp_path):
    from minqing.config import Settings
    from minqing.shell.demo import DEMO_ACCOUNTS, demo_accounts, embedded
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    def settings_for(url):
        return Settings(run_dir=run_dir, database_url=url, amqp_uri=None, amqp_port=0, http_port=0,
                        counties_dir=tmp_path, assessment_dir=tmp_path, log_level="INFO")
    settings = settings_for(f"sqlite:///{run_dir / 'minqing.db'}")
    assert embedded(settings)
    assert not embedded(settings_for("postgresql+psycopg://db/minqing"))
    assert not embedded(settings_for(f"sqlite:///{tmp_path / 'elsewhere.db'}"))
    engine = make_engine(settings.database_url)
    for md in (accounts.metadata_obj, sessions.metadata_obj):     # `minqing run` migrated it before
        md.create_all(engine)
    logins = demo_accounts(engine, settings)
    assert set(logins) == {role for _, role, _, _ in DEMO_ACCOUNTS}
    path = run_dir / "demo-accounts.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    for role, login in logins.items():
        account = accounts.login(engine, login["username"], login["password"])
        assert account.role == role and not account.must_change_password      # no first-login change
    cadre = accounts.login(engine, logins["cadre"]["username"], logins["cadre"]["password"])
    assert (cadre.cadre, cadre.unit) == ("lj-c002", "heigang.kaoshan-station")
    assert demo_accounts(engine, settings) == logins           # the same between runs
    accounts.set_disabled(engine, logins["admin"]["username"])
    path.unlink()
    again = demo_accounts(engine, settings)                    # file gone: made again, enabled
    assert again["admin"]["password"] != logins["admin"]["password"]
    assert accounts.login(engine, again["admin"]["username"], again["admin"]["password"]).role == "admin"
    engine.dispose()


def _row(case_id, status, response_due, resolution_due, overdue=False, **more):
    return {"case_id": case_id, "tracking_no": f"LJ-{case_id}", "category": "202", "status": status, "tier": "village",
            "township": "heigang", "unit": "u1", "cadre": None, "urgency": "normal", "summary": f"诉求{case_id}",
            "response_due": response_due, "resolution_due": resolution_due, "overdue": overdue, "pressure": None,
            "reply_due": None, **more}


def test_the_board_groups_overdue_and_at_risk_cases_and_lists_returned_ones(engine, clock):
    """On a manual clock (09:00Z, 2026-01-05): overdue first, at risk within 4 h of acceptance or 24 h of
    resolution, the rest left off; returned cases in their own list; grouped by township and unit."""
    rows = [_row("ok", "accepted", None, "2026-01-09T09:00:00.000000Z"),
            _row("late", "accepted", None, "2026-01-05T08:00:00.000000Z", overdue=True, pressure="chase"),
            _row("soon", "assigned", "2026-01-05T12:00:00.000000Z", "2026-01-12T09:00:00.000000Z"),
            _row("back", "returned", None, None)]
    catalogue = {"categories": [], "townships": [{"code": "heigang", "name": "黑岗乡", "villages": []}],
                 "units": [{"code": "u1", "name": "靠山村代理代办服务站", "tier": "village"}]}
    api = FakeApi({("GET", "/api/v1/worklist"): Answer(200, {"cases": rows, "total": 4,      # 龙江县's windows
                                                             "warn_before_hours": {"response": 4, "resolution": 24}}),
                   ("GET", "/api/v1/counties/longjiang"): Answer(200, catalogue)})
    account = accounts.add(engine, "s1", "first-password", "supervisor", "longjiang", clock=clock)
    accounts.change_password(engine, account.account_id, "first-password", "second-password")
    client = Client(Console(engine, api, clock))
    client.set_cookie(web.SESSION_COOKIE, sessions.open_session(engine, accounts.login(engine, "s1", "second-password",
                                                                                         clock), clock))
    page = client.get("/console/board")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "超期 1 件，临近期限 1 件" in html and "黑岗乡 · 靠山村代理代办服务站" in html
    assert html.index("LJ-late") < html.index("LJ-soon") < html.index("退回待重新派单") < html.index("LJ-back")
    assert "LJ-ok" not in html and "已施压：催办" in html
    # the cadre's role is refused the board; the supervisor's form errors name the fields
    clock.advance(timedelta(minutes=1))
    api.answers[("GET", "/api/v1/cases/c-1")] = Answer(200, CASE)
    api.answers[("GET", "/api/v1/cases/c-1/routing")] = Answer(200, {"decisions": [], "current": None})
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/cases/c-1").get_data(as_text=True)).group(1)
    answer = client.post("/console/cases/c-1/transfer", data={"csrf": csrf, "to_unit": "", "reason": " "})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422 and "转至单位" in html and "理由" in html
    assert not [c for c in api.calls if c[0] == "POST"]         # nothing was sent


def test_a_cadre_is_refused_the_board(engine, clock):
    client = _logged_in(engine, clock, FakeApi({}))
    assert client.get("/console/board").status_code == 403
