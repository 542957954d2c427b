"""The console's optional second factor (services/console/totp.py, issue #14.1): RFC 6238's test
vectors, a window of one step either side on the injected clock, a code never taken twice, enrolment
shown once and confirmed by a code, the login's code step (forged or stale pending tokens refused,
wrong codes locking like wrong passwords) and the admin's reset."""
from __future__ import annotations

import base64
import os
import re
from datetime import timedelta

import pytest
from werkzeug.test import Client

from minqing.clock import ManualClock
from services.console import accounts, sessions, totp, web
from services.console.app import Console
from tests.unit.test_console_units import engine  # noqa: F401  (the fixture: console tables on SQLite)

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()     # RFC 6238 appendix B, SHA-1


def _wrong(secret, now) -> str:
    """A 6-digit code that is none of the window's codes (so the test cannot pass by luck)."""
    taken = {totp.code_at(secret, now + timedelta(seconds=30 * d)) for d in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in taken)


class NoApi:
    def call(self, *args, **kwargs):
        raise AssertionError("no API call expected")


@pytest.mark.parametrize("seconds, code", [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
                                           (1234567890, "89005924"), (2000000000, "69279037"),
                                           (20000000000, "65353130")])
def test_rfc_6238_test_vectors(seconds, code):
    assert totp.hotp(totp._key(RFC_SECRET), seconds // 30, digits=8) == code
    assert totp.hotp(totp._key(RFC_SECRET), seconds // 30) == code[-6:]


def test_one_step_either_side_is_accepted_and_no_further():
    clock = ManualClock()
    secret, now = totp.new_secret(), clock.now()
    assert len(secret) == 32
    for drift, accepted in ((-60, False), (-30, True), (0, True), (30, True), (60, False)):
        code = totp.code_at(secret, now + timedelta(seconds=drift))
        assert (totp.matching_step(secret, code, now) is not None) is accepted, drift
    code = totp.code_at(secret, now)
    assert totp.matching_step(secret, code, now, after=totp.step_at(now)) is None       # taken already
    assert totp.matching_step(secret, "12345", now) is None and totp.matching_step(secret, "abcdef", now) is None
    uri = totp.uri(secret, "wang", "longjiang")
    assert uri.startswith("otpauth://totp/Minqing%3Awang%40longjiang?") and f"secret={secret}" in uri
    assert "digits=6" in uri and "period=30" in uri


def _enrolled(engine, clock):
    account = accounts.add(engine, "op1", "first-password", "operator", "longjiang", clock=clock)
    accounts.change_password(engine, account.account_id, "first-password", "second-password")
    client = Client(Console(engine, NoApi(), clock))
    client.set_cookie(web.SESSION_COOKIE, sessions.open_session(engine, accounts.login(engine, "op1", "second-password",
                                                                                       clock), clock))
    page = client.get("/console/totp").get_data(as_text=True)
    secret = re.search(r'id="totp-text">([A-Z2-7]+)<', page).group(1)
    assert f"otpauth://totp/Minqing%3Aop1%40longjiang?secret={secret}" in page.replace("&amp;", "&")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    wrong = client.post("/console/totp", data={"csrf": csrf, "secret": secret, "code": _wrong(secret, clock.now())})
    assert wrong.status_code == 422 and '<a href="#f-code">6 位验证码</a>' in wrong.get_data(as_text=True)
    assert not totp.enrolled(engine, account.account_id)
    done = client.post("/console/totp", data={"csrf": csrf, "secret": secret, "code": totp.code_at(secret, clock.now())})
    assert done.status_code == 303 and totp.enrolled(engine, account.account_id)
    shown = client.get("/console/totp").get_data(as_text=True)
    assert "两步验证已开启" in shown and secret not in shown              # the secret is never shown again
    return account, secret


def _password_step(engine, clock):
    client = Client(Console(engine, NoApi(), clock))
    form = client.get("/console/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    asked = client.post("/console/login", data={"csrf": csrf, "username": "op1", "password": "second-password"})
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'name="code"' in html and web.SESSION_COOKIE not in asked.headers.get(
        "Set-Cookie", "")
    return client, csrf, re.search(r'name="pending" value="([^"]+)"', html).group(1)


def test_login_asks_for_the_code_and_a_code_is_taken_once(engine):
    clock = ManualClock()
    account, secret = _enrolled(engine, clock)
    clock.advance(timedelta(seconds=30))                 # the enrolment's code is spent; the next step's is fresh
    client, csrf, pending = _password_step(engine, clock)
    code = totp.code_at(secret, clock.now())
    done = client.post("/console/login/code", data={"csrf": csrf, "pending": pending, "code": code})
    assert done.status_code == 303 and done.headers["Location"] == "/console/report"
    assert web.SESSION_COOKIE in done.headers["Set-Cookie"]
    client, csrf, pending = _password_step(engine, clock)
    replay = client.post("/console/login/code", data={"csrf": csrf, "pending": pending, "code": code})
    assert replay.status_code == 401 and "已使用过" in replay.get_data(as_text=True)
    forged = pending.rsplit(".", 1)[0] + ".0" * 1 + "f" * 63
    clock.advance(timedelta(seconds=30))
    fresh = totp.code_at(secret, clock.now())
    assert client.post("/console/login/code", data={"csrf": csrf, "pending": forged,
                                                   "code": fresh}).status_code == 401
    clock.advance(totp.PENDING)                            # the password step is stale
    stale = client.post("/console/login/code", data={"csrf": csrf, "pending": pending,
                                                     "code": totp.code_at(secret, clock.now())})
    assert stale.status_code == 401


def test_wrong_codes_lock_the_account_and_the_admin_resets_the_second_factor(engine):
    clock = ManualClock()
    account, secret = _enrolled(engine, clock)
    client, csrf, pending = _password_step(engine, clock)
    for _ in range(accounts.MAX_FAILURES - 1):
        assert client.post("/console/login/code", data={"csrf": csrf, "pending": pending,
                                                       "code": _wrong(secret, clock.now())}).status_code == 401
    client, csrf, pending = _password_step(engine, clock)   # the right password again does not clear the count
    locked = client.post("/console/login/code", data={"csrf": csrf, "pending": pending,
                                                      "code": _wrong(secret, clock.now())})
    assert locked.status_code == 401 and "账号已锁定" in locked.get_data(as_text=True)
    with pytest.raises(accounts.LoginRefused) as refused:             # the password alone is locked out too
        accounts.login(engine, "op1", "second-password", clock)
    assert refused.value.reason == "locked"
    clock.advance(accounts.LOCKOUT + timedelta(seconds=31))
    assert totp.reset(engine, "op1") == account.account_id
    assert not totp.enrolled(engine, account.account_id)
    client = Client(Console(engine, NoApi(), clock))
    form = client.get("/console/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    back = client.post("/console/login", data={"csrf": csrf, "username": "op1", "password": "second-password"})
    assert back.status_code == 303                           # no code asked any more
    with pytest.raises(accounts.AccountError):
        totp.reset(engine, "nobody")


def test_an_admin_removes_a_lost_phones_second_factor_with_the_cli(tmp_path, monkeypatch, capsys):
    """`minqing account totp-reset NAME` on a database `minqing db upgrade` made (migration 0002's columns)."""
    from minqing.db import make_engine
    from minqing.shell import cli
    for name in [k for k in os.environ if k.startswith("MINQING_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MINQING_DATABASE_URL", f"sqlite:///{tmp_path / 'minqing.db'}")
    monkeypatch.setenv("MINQING_RUN_DIR", str(tmp_path / "run"))
    assert cli.main(["db", "upgrade"]) == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'minqing.db'}")
    try:
        clock = ManualClock()
        account = accounts.add(engine, "wang", "first-password", "operator", "longjiang", clock=clock)
        secret = totp.new_secret()
        assert totp.enrol(engine, account.account_id, secret, totp.code_at(secret, clock.now()), clock)
        session = sessions.open_session(engine, account, clock)
        capsys.readouterr()
        assert cli.main(["account", "totp-reset", "wang"]) == 0
        assert "two-step login removed; 1 session(s) ended" in capsys.readouterr().out
        assert not totp.enrolled(engine, account.account_id) and sessions.load(engine, session, clock) is None
        assert cli.main(["account", "totp-reset", "nobody"]) != 0
    finally:
        engine.dispose()
