"""The cadre's actions on the case page beyond accept and resolve (issue #14 §3): escalate, transfer,
joint handling, return and the written reply to supervision — each form names its missing fields in
words before anything is sent, each sends the body the API's schema asks for, and the API's 409s come
back as words. Also the worklist's working days left. On a fake API (tests/e2e holds the real one)."""
from __future__ import annotations

import re

import pytest
from werkzeug.test import Client

from minqing import access
from minqing.clock import ManualClock
from minqing.db import make_engine
from services.console import accounts, sessions, web
from services.console.api import Answer
from services.console.app import Console, reply_owed

SUPERVISED = {"position": 7, "version": 4, "type": "case.supervised", "at": "2026-01-06T09:00:00+08:00",
              "what": {"level": "supervise", "note": "请书面答复", "reply_due": "2026-01-07T09:00:00+08:00"}}
CASE = {"case_id": "c-1", "tracking_no": "LJ-20260105-0001", "county": "longjiang", "status": "accepted",
        "channel": "hotline", "category": "202", "summary": "路灯不亮", "location": {},
        "assignment": {"tier": "village", "unit": "u1", "unit_name": "靠山村代理代办服务站", "cadre": "lj-c002",
                       "response_due": None, "resolution_due": "2026-01-12T09:00:00+08:00", "policy_version": 1},
        "history": [{"position": 1, "version": 1, "type": "case.reported", "at": "2026-01-05T09:00:00+08:00",
                     "what": {}}, SUPERVISED]}
CATALOGUE = {"county": "longjiang", "categories": [], "townships": [],
             "units": [{"code": "u1", "name": "靠山村代理代办服务站", "tier": "village"},
                       {"code": "u2", "name": "平安村代理代办服务站", "tier": "village"},
                       {"code": "t1", "name": "黑岗乡便民服务中心", "tier": "township"}]}


class FakeApi:
    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def call(self, method, path, **kwargs):
        self.calls.append((method, path, kwargs))
        return self.answers.get((method, path), Answer(404, {"error": {"code": "not_found"}}))


@pytest.fixture
def cadre(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'console.db'}")
    for md in (access.metadata_obj, accounts.metadata_obj, sessions.metadata_obj):
        md.create_all(engine)
    clock = ManualClock()
    api = FakeApi({("GET", "/api/v1/cases/c-1"): Answer(200, CASE),
                   ("GET", "/api/v1/cases/c-1/routing"): Answer(200, {"decisions": [], "current": None}),
                   ("GET", "/api/v1/counties/longjiang"): Answer(200, CATALOGUE)})
    account = accounts.add(engine, "c1", "first-password", "cadre", "longjiang", unit="u1", cadre="lj-c002",
                           clock=clock)
    accounts.change_password(engine, account.account_id, "first-password", "second-password")
    client = Client(Console(engine, api, clock))
    client.set_cookie(web.SESSION_COOKIE, sessions.open_session(engine, accounts.login(engine, "c1", "second-password",
                                                                                       clock), clock))
    html = client.get("/console/cases/c-1").get_data(as_text=True)
    yield client, api, re.search(r'name="csrf" value="([^"]+)"', html).group(1), html
    engine.dispose()


def test_the_case_page_offers_every_action_the_holder_may_take(cadre):
    _, _, _, html = cadre
    for action in ("accept", "note", "resolve", "reply", "escalate", "transfer", "joint", "return"):
        assert f'action="/console/cases/c-1/{action}"' in html or action == "accept", action
    assert "须在 2026-01-07 09:00 前书面答复" in html                     # the written reply owed, and by when
    transfer = html[html.index('action="/console/cases/c-1/transfer"'):]
    assert '<option value="u2">' in transfer.split("</select>")[0] and 'value="t1"' not in transfer.split("</select>")[0]


@pytest.mark.parametrize("action,form,field", [
    ("escalate", {"reason": " "}, "上报理由"), ("return", {"reason": ""}, "退回理由"),
    ("transfer", {"to_unit": "", "reason": ""}, "转至单位"), ("reply", {"note": "", "reply_to": "supervise"}, "书面答复")])
def test_a_missing_reason_is_named_in_words_and_nothing_is_sent(cadre, action, form, field):
    client, api, csrf, _ = cadre
    sent = len(api.calls)
    answer = client.post(f"/console/cases/c-1/{action}", data={"csrf": csrf, **form})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422 and f">{field}</a>：必填" in html, html[html.find('class="errors"'):][:400]
    assert not [c for c in api.calls[sent:] if c[0] == "POST"]


def test_each_action_sends_the_apis_body_and_the_409s_come_back_in_words(cadre):
    client, api, csrf, _ = cadre
    api.answers[("POST", "/api/v1/cases/c-1/joint")] = Answer(200, {"case_id": "c-1"})
    done = client.post("/console/cases/c-1/joint", data={"csrf": csrf, "co_units": ["u2", "t1"], "reason": "跨村"})
    assert done.status_code == 303 and done.headers["Location"].endswith("?done=joint")
    assert api.calls[-1][2]["body"] == {"co_units": ["u2", "t1"], "reason": "跨村"}
    api.answers[("POST", "/api/v1/cases/c-1/notes")] = Answer(200, {"case_id": "c-1"})
    client.post("/console/cases/c-1/reply", data={"csrf": csrf, "note": "已于周二修复", "reply_to": "supervise"})
    assert api.calls[-1][1] == "/api/v1/cases/c-1/notes" and api.calls[-1][2]["body"] == {
        "note": "已于周二修复", "reply_to": "supervise"}
    for path, code, words in (("escalate", "top_tier", "无法再上报"), ("joint", "already_joint", "已在联合办理中"),
                              ("reply", "no_reply_owed", "没有需要书面答复的督办")):
        api_path = "/api/v1/cases/c-1/" + ("notes" if path == "reply" else path)
        api.answers[("POST", api_path)] = Answer(409, {"error": {"code": code, "message": "x"}})
        answer = client.post(f"/console/cases/c-1/{path}", data={"csrf": csrf, "reason": "理由", "note": "答复",
                                                                 "reply_to": "supervise"})
        assert answer.status_code == 409 and words in answer.get_data(as_text=True), path
    api.answers[("POST", "/api/v1/cases/c-1/joint")] = Answer(422, {"error": {
        "code": "invalid", "fields": {"co_units": ["required for this category"]}}})
    answer = client.post("/console/cases/c-1/joint", data={"csrf": csrf})
    assert answer.status_code == 422 and '<a href="#f-co_units">协办单位</a>' in answer.get_data(as_text=True)
    posted = [c for c in api.calls if c[0] == "POST"]
    assert posted[-1][2]["body"] == {}                                # none ticked: the API's default co-units


def test_a_reply_is_owed_until_one_is_noted():
    assert reply_owed(CASE["history"]) == {"level": "supervise", "due": "2026-01-07T09:00:00+08:00"}
    noted = {"type": "case.progress_noted", "what": {"reply_to": "supervise"}}
    assert reply_owed(CASE["history"] + [noted]) is None
    chased = {"type": "case.chased", "what": {"level": "chase"}}
    assert reply_owed([chased]) is None


def test_the_worklist_shows_working_days_left(cadre):
    client, api, _, _ = cadre
    api.answers[("GET", "/api/v1/worklist")] = Answer(200, {"total": 1, "cases": [{
        "case_id": "c-1", "tracking_no": "LJ-1", "summary": "s", "status": "accepted", "overdue": False,
        "response_due": None, "resolution_due": "2026-01-12T09:00:00+08:00", "resolution_working_days_left": 4}]})
    assert "还有 4 个工作日" in client.get("/console/worklist").get_data(as_text=True)
