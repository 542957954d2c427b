"""The residents' pages (issue #14 §8) on a fake API (tests/e2e/test_console_resident.py holds the real
one): the 民生在线 form names every bad field in words before anything is sent, posts to intake's
online door with the form's Idempotency-Key and the resident's address, and shows the tracking number
and PIN; the rating page asks the two 回访 questions, sends what an SMS reply says, refuses a second
answer in words, and answers a forged or expired link with a clear 4xx page."""
from __future__ import annotations

import re

import pytest
from werkzeug.test import Client

from minqing import access
from minqing.clock import ManualClock
from minqing.db import make_engine
from services.console import accounts, sessions
from services.console.api import Answer
from services.console.app import Console

CATALOGUE = {"county": "longjiang", "name": "龙江县",
             "categories": [{"code": "202", "key": "road", "name": "道路交通", "start_tier": "village"}],
             "townships": [{"code": "heigang", "name": "黑岗乡", "villages": [
                 {"code": "heigang.kaoshan", "name": "靠山村", "hamlets": [{"code": "heigang.kaoshan.h1", "name": "一屯"}]}]}],
             "units": []}
TOKEN = "0b9c6a0e-1111-2222-3333-444455556666.5.6a000000.AAAAAAAAAAAAAAAAAAAAAA"
VIEW = {"case_id": "c-1", "tracking_no": "LJ-20260105-0001", "category_name": "道路交通", "place_name": "靠山村",
        "resolution": "<script>alert(1)</script>路灯已修好", "resolved_at": "2026年1月5日 17:00",
        "expires_at": "2026年1月11日 17:00", "state": "awaiting", "answer": None}
ANSWERED = {**VIEW, "state": "answered",
            "answer": {"rating": "unsatisfied", "solved": False, "via": "online", "at": "2026年1月6日 09:00"}}
REGISTERED = {"case_id": "c-9", "tracking_no": "LJ-20260105-0009", "pin": "123456", "status": "reported",
              "merged_into": None, "position": 9, "links": {}}


class FakeApi:
    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def call(self, method, path, **kwargs):
        self.calls.append((method, path, kwargs))
        answer = self.answers.get((method, path), Answer(404, {"error": {"code": "not_found"}}))
        return answer.pop(0) if isinstance(answer, list) else answer


@pytest.fixture
def console(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'console.db'}")
    for md in (access.metadata_obj, accounts.metadata_obj, sessions.metadata_obj):
        md.create_all(engine)
    api = FakeApi({("GET", "/api/v1/counties/longjiang"): Answer(200, CATALOGUE)})
    yield Client(Console(engine, api, ManualClock())), api
    engine.dispose()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _form(client, path):
    page = client.get(path)
    html = page.get_data(as_text=True)
    idem = re.search(r'name="idem" value="([^"]+)"', html)
    return page, html, _csrf(html), idem.group(1) if idem else None


def test_the_online_form_needs_no_login_and_offers_the_catalogue_picker(console):
    client, _ = console
    page, html, _, idem = _form(client, "/console/online/longjiang")
    assert page.status_code == 200 and idem
    assert "龙江县" in html and '<option value="202 道路交通">' in html
    assert 'data-parent="f-township"' in html and '<option value="heigang.kaoshan">靠山村</option>' in html
    assert "Content-Security-Policy" in page.headers and page.headers["Cache-Control"] == "no-store"


def test_empty_fields_are_named_in_words_and_nothing_is_sent(console):
    client, api = console
    _, _, csrf, idem = _form(client, "/console/online/longjiang")
    answer = client.post("/console/online/longjiang", data={"csrf": csrf, "idem": idem, "summary": " "})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422
    for field in ("诉求类别", "乡镇", "您反映的问题"):
        assert f">{field}</a>：必填" in html, field
    assert not [c for c in api.calls if c[0] == "POST"]
    assert f'name="idem" value="{idem}"' in html          # the same form, the same key


def test_a_good_report_goes_to_the_online_door_once_per_form(console):
    client, api = console
    api.answers[("POST", "/api/v1/channels/online/longjiang")] = Answer(201, REGISTERED)
    _, _, csrf, idem = _form(client, "/console/online/longjiang")
    form = {"csrf": csrf, "idem": idem, "category": "202 道路交通", "township": "heigang", "village": "heigang.kaoshan",
            "hamlet": "", "summary": "路灯不亮", "phone": "13800138000"}
    answer = client.post("/console/online/longjiang", data=form, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 201 and "LJ-20260105-0009" in html and "123456" in html
    assert "查询码只在此显示" in html
    method, path, sent = api.calls[-1]
    assert sent["body"] == {"category": "202", "summary": "路灯不亮", "township": "heigang",
                            "village": "heigang.kaoshan", "phone": "13800138000"}
    assert sent["headers"] == {"Idempotency-Key": idem} and sent["client"] == "10.1.2.3" and "token" not in sent


def test_the_online_doors_field_errors_and_limit_come_back_in_words(console):
    client, api = console
    api.answers[("POST", "/api/v1/channels/online/longjiang")] = [
        Answer(422, {"error": {"code": "invalid_fields", "fields": {
            "phone": ["not a mainland mobile number"], "village": ["'x' is not a village of 龙江县"]}}}),
        Answer(429, {"error": {"code": "rate_limited"}})]
    _, _, csrf, idem = _form(client, "/console/online/longjiang")
    form = {"csrf": csrf, "idem": idem, "category": "202", "township": "heigang", "village": "x", "summary": "路灯",
            "phone": "12"}
    html = client.post("/console/online/longjiang", data=form).get_data(as_text=True)
    assert ">手机号</a>：请填写 11 位手机号" in html and ">村（社区）</a>：不是本县的地点" in html
    limited = client.post("/console/online/longjiang", data=form)
    assert limited.status_code == 429 and "提交过于频繁" in limited.get_data(as_text=True)


def test_without_the_form_token_nothing_is_sent_and_an_unknown_county_is_404(console):
    client, api = console
    assert client.post("/console/online/longjiang", data={"summary": "x"}).status_code == 403
    assert client.get("/console/online/nowhere").status_code == 404
    assert not [c for c in api.calls if c[0] == "POST"]


def test_the_rating_page_asks_both_questions_and_escapes_the_result(console):
    client, api = console
    api.answers[("GET", f"/api/v1/rate/{TOKEN}")] = Answer(200, VIEW)
    page = client.get(f"/console/rate/{TOKEN}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "实际解决了吗" in html and "满意吗" in html
    assert "&lt;script&gt;" in html and "<script>alert" not in html
    for value in ("yes", "no", "satisfied", "basically_satisfied", "unsatisfied"):
        assert f'value="{value}"' in html


def test_an_answer_goes_as_an_sms_reply_would_and_a_missing_one_is_named(console):
    client, api = console
    path = f"/api/v1/rate/{TOKEN}"
    api.answers[("GET", path)] = Answer(200, VIEW)
    api.answers[("POST", path)] = Answer(201, ANSWERED)
    csrf = _csrf(client.get(f"/console/rate/{TOKEN}").get_data(as_text=True))
    missing = client.post(f"/console/rate/{TOKEN}", data={"csrf": csrf, "rating": "satisfied"})
    assert missing.status_code == 422 and ">问题是否解决</a>：请选择一项" in missing.get_data(as_text=True)
    assert not [c for c in api.calls if c[0] == "POST"]
    done = client.post(f"/console/rate/{TOKEN}", data={"csrf": csrf, "solved": "no", "rating": "unsatisfied"})
    html = done.get_data(as_text=True)
    assert done.status_code == 201 and "谢谢您的评价" in html and "未解决，不满意" in html and "重新交办" in html
    assert api.calls[-1][2]["body"] == {"solved": False, "rating": "unsatisfied"}


def test_a_second_answer_is_refused_in_words_with_the_answer_on_record(console):
    client, api = console
    path = f"/api/v1/rate/{TOKEN}"
    api.answers[("GET", path)] = [Answer(200, VIEW), Answer(200, ANSWERED), Answer(200, ANSWERED)]
    api.answers[("POST", path)] = Answer(409, {"error": {"code": "already_answered"}})
    csrf = _csrf(client.get(f"/console/rate/{TOKEN}").get_data(as_text=True))
    again = client.post(f"/console/rate/{TOKEN}", data={"csrf": csrf, "solved": "yes", "rating": "satisfied"})
    html = again.get_data(as_text=True)
    assert again.status_code == 409 and "已经评价过，不能重复评价" in html and "未解决，不满意" in html
    shown = client.get(f"/console/rate/{TOKEN}").get_data(as_text=True)
    assert 'name="rating"' not in shown and "已记录的评价" in shown


@pytest.mark.parametrize("status,words", [(404, "评价链接无效"), (410, "评价链接已过期"), (429, "尝试次数过多")])
def test_a_forged_expired_or_flooded_link_is_a_clear_4xx_page(console, status, words):
    client, api = console
    api.answers[("GET", f"/api/v1/rate/{TOKEN}")] = Answer(status, {"error": {"code": "x"}})
    page = client.get(f"/console/rate/{TOKEN}")
    assert page.status_code == status and words in page.get_data(as_text=True)


def test_the_residents_pages_speak_english_when_asked(console):
    client, api = console
    api.answers[("GET", f"/api/v1/rate/{TOKEN}")] = Answer(200, VIEW)
    html = client.get(f"/console/rate/{TOKEN}?lang=en").get_data(as_text=True)
    assert "Was the matter actually solved?" in html and "Basically satisfied" in html
    assert api.calls[-1][2]["query"] == {"lang": "en"}       # notify words the times in English too
    assert "Report a matter online" in client.get("/console/online/longjiang?lang=en").get_data(as_text=True)
