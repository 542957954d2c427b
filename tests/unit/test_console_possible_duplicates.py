"""The operator's "check for duplicates first" (issue #14 §2: possible duplicates shown before saving):
the open cases of the chosen category in the chosen township, read from routing's worklist with the
person's own token; nothing is registered, and the form comes back as typed."""
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
from tests.unit.test_console_field_units import CATALOGUE
from tests.unit.test_console_units import FakeApi

OPEN = {"cases": [{"case_id": "c-7", "tracking_no": "LJ-20260105-0003", "summary": "靠山村桥面塌陷",
                   "status": "accepted"}], "total": 1}


@pytest.fixture
def operator(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'console.db'}")
    for md in (access.metadata_obj, accounts.metadata_obj, sessions.metadata_obj):
        md.create_all(engine)
    clock = ManualClock()
    api = FakeApi({("GET", "/api/v1/counties/longjiang"): Answer(200, CATALOGUE),
                   ("GET", "/api/v1/worklist"): Answer(200, OPEN)})
    account = accounts.add(engine, "op1", "first-password", "operator", "longjiang", clock=clock)
    accounts.change_password(engine, account.account_id, "first-password", "second-password")
    client = Client(Console(engine, api, clock))
    client.set_cookie(web.SESSION_COOKIE, sessions.open_session(engine, accounts.login(engine, "op1", "second-password",
                                                                                       clock), clock))
    html = client.get("/console/report").get_data(as_text=True)
    yield client, api, re.search(r'name="csrf" value="([^"]+)"', html).group(1), html
    engine.dispose()


def test_the_check_lists_open_cases_of_the_category_in_the_township_and_saves_nothing(operator):
    client, api, csrf, form_page = operator
    assert 'name="action" value="check"' in form_page
    # the register button comes first: Enter in a field registers, as before
    assert form_page.index('<button type="submit">') < \
        form_page.index('value="check"')
    typed = {"csrf": csrf, "idem": "k-1", "action": "check", "channel": "hotline", "category": "202 道路及水毁修复",
             "township": "heigang", "village": "heigang.kaoshan", "summary": "桥面又塌了", "name": "张三",
             "phone": "13800138000"}
    page = client.post("/console/report", data=typed)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "可能重复的诉求" in html
    assert 'href="/console/cases/c-7">LJ-20260105-0003</a>' in html and "办理中" in html
    assert "桥面又塌了" in html and 'value="k-1"' in html            # the form as typed, the same idempotency key
    sent = [(m, p, k.get("query")) for m, p, k in api.calls if p != "/api/v1/counties/longjiang"]
    assert sent == [("GET", "/api/v1/worklist", {"category": "202", "township": "heigang", "limit": 500})]


def test_the_newest_come_first_and_the_count_is_said(operator):
    client, api, csrf, _ = operator
    api.answers[("GET", "/api/v1/worklist")] = Answer(200, {"cases": [
        {"case_id": f"c-{n}", "tracking_no": f"LJ-202601{d:02d}-{n:04d}", "summary": f"第{n}件", "status": "assigned"}
        for d, n in [(3, 1), (5, 9), (4, 2)] + [(2, k) for k in range(10, 40)]], "total": 33})
    html = client.post("/console/report", data={"csrf": csrf, "action": "check", "category": "202",
                                                "township": "heigang"}).get_data(as_text=True)
    listed = re.findall(r">(LJ-\d{8}-\d{4})</a>", html)
    assert listed[:3] == ["LJ-20260105-0009", "LJ-20260104-0002", "LJ-20260103-0001"] and len(listed) == 20
    assert "共 33 件" in html


def test_nothing_open_says_so_and_missing_fields_are_named(operator):
    client, api, csrf, _ = operator
    api.answers[("GET", "/api/v1/worklist")] = Answer(200, {"cases": [], "total": 0})
    html = client.post("/console/report", data={"csrf": csrf, "action": "check", "category": "202",
                                                "township": "heigang"}).get_data(as_text=True)
    assert "同一乡镇、同一类别暂无在办诉求" in html
    api.calls.clear()
    missing = client.post("/console/report", data={"csrf": csrf, "action": "check", "category": "", "township": ""})
    assert missing.status_code == 422
    assert 'id="e-category"' in missing.get_data(as_text=True) and 'id="e-township"' in missing.get_data(as_text=True)
    assert all(p != "/api/v1/worklist" for _, p, _ in api.calls)
