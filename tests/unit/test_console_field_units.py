"""Field capture without a network and live lists (issue #14 §9, §10), on a fake API and a manual clock:
what the console sends for a captured entry (the capture's key as Idempotency-Key, its original time
as `reported_at`, bounded), what it refuses and how it names it, the same body for a replay, the
visit's day in the county's zone, the page's installable parts, and the live poll that reads the
worklist only when the ledger moved. The real services answer in tests/e2e/test_console_field.py.

Seeds: 000 (龙江县) "县、乡、村三级干部…开展民情下访" — cadres record what residents raise on field
visits; 003 (乡镇) "逢集日在集市设立便民服务岗" — a market-day post takes reports where there is often
no signal. Both are intake's offline channels (`field_visit`, `market_post`)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert
from werkzeug.test import Client

from minqing import access, ledger
from minqing.clock import ManualClock
from minqing.db import make_engine, write_transaction
from services.console import accounts, sessions, web
from services.console.api import Answer
from services.console.app import Console
from services.console.field_pages import CAPTURE_WINDOW, TooEarly, capture_time, worklist_digest
from tests.unit.test_console_units import FakeApi

NOW = datetime(2026, 1, 5, 17, 30, tzinfo=timezone.utc)      # 01:30 on 6 January in Beijing
CATALOGUE = {"county": "longjiang", "name": "龙江县",
             "categories": [{"code": "202", "name": "道路及水毁修复"}],
             "townships": [{"code": "heigang", "name": "黑岗乡", "villages": [
                 {"code": "heigang.kaoshan", "name": "靠山村",
                  "hamlets": [{"code": "heigang.kaoshan.11", "name": "靠山村11屯"}]}]}],
             "units": []}
REGISTERED = Answer(201, {"case_id": "c-9", "tracking_no": "LJ-20260106-0001", "pin": "123456", "status": "reported"})


@pytest.fixture
def setup(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'console.db'}")
    for md in (access.metadata_obj, accounts.metadata_obj, sessions.metadata_obj, ledger.metadata_obj):
        md.create_all(engine)
    with write_transaction(engine) as conn:
        conn.execute(insert(ledger.head_table).values(id=1, position=41, hash="0" * 64))
    clock = ManualClock(NOW)
    api = FakeApi({("GET", "/api/v1/counties/longjiang"): Answer(200, CATALOGUE),
                   ("POST", "/api/v1/cases"): REGISTERED})
    yield engine, clock, api
    engine.dispose()


def _client(engine, clock, api, role="cadre", name="fc1"):
    extra = {"unit": "u1", "cadre": "lj-c002"} if role == "cadre" else {}
    account = accounts.add(engine, name, "first-password", role, "longjiang", clock=clock, **extra)
    accounts.change_password(engine, account.account_id, "first-password", "second-password")
    client = Client(Console(engine, api, clock))
    client.set_cookie(web.SESSION_COOKIE, sessions.open_session(engine, accounts.login(engine, name, "second-password",
                                                                                         clock), clock))
    return client


def _csrf(client) -> str:
    return client.get("/console/field/token").get_json()["csrf"]


def _entry(**more):
    return {"key": "0b7d4c1e-5f7a-4b1c-9a52-2f8e7d6c5b4a", "kind": "report", "captured_at": "2026-01-05T06:10:00.000Z",
            "channel": "market_post", "category": "202", "township": "heigang", "village": "heigang.kaoshan",
            "hamlet": "heigang.kaoshan.11", "summary": "集市东口路面塌陷", "name": "周八", "phone": "13900001234",
            "state": "waiting", **more}


def _sync(client, csrf, entry):
    return client.post("/console/field/sync", data=json.dumps(entry), content_type="application/json",
                       headers={"X-CSRF-Token": csrf})


def test_capture_time_is_bounded_to_a_week_back_and_the_phone_clock_a_little_ahead():
    assert capture_time("2026-01-05T06:10:00Z", NOW) == datetime(2026, 1, 5, 6, 10, tzinfo=timezone.utc)
    assert capture_time((NOW - CAPTURE_WINDOW).isoformat(), NOW) == NOW - CAPTURE_WINDOW
    for value, why in (((NOW - CAPTURE_WINDOW - timedelta(minutes=1)).isoformat(), "capture.too_old"),
                       ((NOW + timedelta(minutes=11)).isoformat(), "capture.future"),
                       ("yesterday", "capture.bad_time"), (None, "capture.bad_time")):
        with pytest.raises(ValueError, match=why):
            capture_time(value, NOW)
    with pytest.raises(TooEarly):
        capture_time((NOW + timedelta(minutes=2)).isoformat(), NOW)


def test_a_captured_report_registers_with_its_key_and_original_time_and_a_replay_sends_the_same(setup):
    """Seed 003's market-day post: the report keeps the time it was taken, not the time the phone found
    a signal; sent again after a lost answer it is the same request under the same key (intake answers it
    with the first tracking number)."""
    engine, clock, api = setup
    client = _client(engine, clock, api)
    csrf = _csrf(client)
    first = _sync(client, csrf, _entry())
    assert first.status_code == 201, first.get_data(as_text=True)
    assert first.get_json() == {"key": _entry()["key"], "kind": "report", "tracking_no": "LJ-20260106-0001",
                                "reported_at": "2026-01-05T06:10:00.000000Z"}
    clock.advance(timedelta(hours=1))      # the answer was lost; sent again later (the session still open)
    assert _sync(client, csrf, _entry()).status_code == 201
    sent = [c for c in api.calls if c[:2] == ("POST", "/api/v1/cases")]
    assert len(sent) == 2 and sent[0][2]["body"] == sent[1][2]["body"]
    assert {c[2]["headers"]["Idempotency-Key"] for c in sent} == {_entry()["key"]}
    body = sent[0][2]["body"]
    assert body["channel"] == "market_post" and body["reported_at"] == "2026-01-05T06:10:00.000000Z"
    assert body["paper_form_ref"] == f"field-capture:{_entry()['key']}"
    assert body["location"] == {"township": "heigang", "village": "heigang.kaoshan", "hamlet": "heigang.kaoshan.11"}
    assert "state" not in body and "key" not in body


def test_what_the_console_refuses_is_named_in_words_and_nothing_is_sent(setup):
    engine, clock, api = setup
    client = _client(engine, clock, api)
    csrf = _csrf(client)
    old = _sync(client, csrf, _entry(captured_at=(NOW - timedelta(days=8)).isoformat()))
    assert old.status_code == 422 and "7 天" in old.get_json()["errors"]["captured_at"]
    blank = _sync(client, csrf, _entry(summary=" ", name="", channel="hotline"))
    assert blank.status_code == 422
    assert set(blank.get_json()["errors"]) == {"summary", "name", "channel"}
    assert _sync(client, csrf, _entry(key="short")).status_code == 422
    early = _sync(client, csrf, _entry(captured_at=(NOW + timedelta(minutes=3)).isoformat()))
    assert early.status_code == 425 and int(early.headers["Retry-After"]) > 170
    assert not [c for c in api.calls if c[0] == "POST"]


def test_sync_needs_the_sessions_token_a_cadre_and_a_session(setup):
    engine, clock, api = setup
    client = _client(engine, clock, api)
    assert _sync(client, "forged", _entry()).status_code == 403
    assert _sync(Client(Console(engine, api, clock)), "x", _entry()).status_code == 401
    operator = _client(engine, clock, api, role="operator", name="op1")
    assert operator.get("/console/field/").status_code == 403
    assert operator.get("/console/field/token").status_code == 403
    assert _sync(operator, "x", _entry()).status_code == 403
    assert not [c for c in api.calls if c[0] == "POST"]


def test_a_visit_is_dated_by_the_countys_day_of_its_capture(setup):
    """Seed 000's quota counts 驻点工作日 — days in the county's calendar: a visit recorded at 01:30
    Beijing time on 6 January is a visit of 6 January, whatever the phone's zone."""
    engine, clock, api = setup
    api.answers[("POST", "/api/v1/visits")] = Answer(201, {"event_id": "e", "position": 5, "cadre": "lj-c002",
                                                            "day": "2026-01-06"})
    client = _client(engine, clock, api)
    answer = _sync(client, _csrf(client), {"key": "5a1c2e3d-0000-4000-8000-00000000abcd", "kind": "visit",
                                           "captured_at": "2026-01-05T17:29:00Z", "hamlet": "heigang.kaoshan.11",
                                           "households": "12"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    assert api.calls[-1][:2] == ("POST", "/api/v1/visits")
    assert api.calls[-1][2]["body"] == {"day": "2026-01-06", "hamlet": "heigang.kaoshan.11", "households": 12}
    bad = _sync(client, _csrf(client), {"key": "5a1c2e3d-0000-4000-8000-00000000abce", "kind": "visit",
                                        "captured_at": "2026-01-05T17:29:00Z", "hamlet": "", "households": "x"})
    assert bad.status_code == 422 and set(bad.get_json()["errors"]) == {"visit_hamlet", "households"}


def test_the_field_page_is_installable_and_works_as_a_plain_form_without_javascript(setup):
    engine, clock, api = setup
    client = _client(engine, clock, api)
    page = client.get("/console/field/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and '<link rel="manifest" href="/static/field.webmanifest">' in html
    assert '<script src="/static/field.js" defer></script>' in html and not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert 'href="/console/field/"' in html                              # the cadre's nav link
    sw = client.get("/console/field/sw.js")
    assert sw.status_code == 200 and sw.mimetype == "text/javascript" and "/console/field/" in sw.get_data(as_text=True)
    manifest = client.get("/static/field.webmanifest")
    assert manifest.mimetype == "application/manifest+json"
    doc = json.loads(manifest.get_data(as_text=True))
    assert doc["start_url"] == doc["scope"] == "/console/field/"
    for icon in doc["icons"]:
        got = client.get(icon["src"])
        assert got.status_code == 200 and got.mimetype == icon["type"], icon
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]   # worker-src and manifest-src fall back to it
    # no JavaScript: the form posts and registers at once (taken now: no earlier time, no paper form)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    form = {k: v for k, v in _entry().items() if k not in ("captured_at", "state")}
    done = client.post("/console/field/", data={**form, "csrf": csrf})
    assert done.status_code == 303 and done.headers["Location"].endswith("?done=LJ-20260106-0001")
    body = api.calls[-1][2]["body"]
    assert "reported_at" not in body and "paper_form_ref" not in body
    missing = client.post("/console/field/", data={**form, "summary": "", "csrf": csrf})
    assert missing.status_code == 422 and "诉求内容</a>：必填" in missing.get_data(as_text=True)


def test_the_live_poll_reads_the_worklist_only_when_the_ledger_moved(setup):
    engine, clock, api = setup
    rows = [{"case_id": "a", "status": "assigned", "unit": "u1", "cadre": None, "pressure": None, "overdue": False,
             "response_due": "2026-01-06T01:00:00.000000Z", "resolution_due": None, "reply_due": None}]
    api.answers[("GET", "/api/v1/worklist")] = Answer(200, {"cases": rows, "total": 1})
    client = _client(engine, clock, api)
    first = client.get("/console/live/worklist?after=-1").get_json()
    assert first["position"] == 41 and first["digest"] == worklist_digest(rows, 1)
    reads = len([c for c in api.calls if c[1] == "/api/v1/worklist"])
    assert client.get("/console/live/worklist?after=41").get_json() == {"position": 41}
    assert len([c for c in api.calls if c[1] == "/api/v1/worklist"]) == reads          # nothing new: no API read
    with write_transaction(engine) as conn:
        conn.execute(ledger.head_table.update().values(position=42))
    api.answers[("GET", "/api/v1/worklist")] = Answer(200, {"cases": rows + [{**rows[0], "case_id": "b"}], "total": 2})
    moved = client.get("/console/live/worklist?after=41").get_json()
    assert moved["position"] == 42 and moved["digest"] != first["digest"]
    assert client.get("/console/live/board").status_code == 403                        # the supervisor's
    assert Client(Console(engine, api, clock)).get("/console/live/worklist").status_code == 303


def test_a_worklist_digest_changes_with_what_the_page_shows():
    row = {"case_id": "a", "status": "assigned", "unit": "u1", "overdue": False, "resolution_due": None}
    same = worklist_digest([row], 1)
    assert worklist_digest([dict(row)], 1) == same
    assert worklist_digest([{**row, "status": "accepted"}], 1) != same
    assert worklist_digest([{**row, "overdue": True}], 1) != same
    assert worklist_digest([{**row, "summary": "other words"}], 1) == same    # not shown as a change


def test_the_worklist_and_the_board_load_the_live_script_and_stay_plain_pages(setup):
    """Without JavaScript nothing changes (the lists are the plain pages they were); with it, live.js
    polls the view the page names."""
    engine, clock, api = setup
    api.answers[("GET", "/api/v1/worklist")] = Answer(200, {"cases": [], "total": 0})
    cadre = _client(engine, clock, api)
    html = cadre.get("/console/worklist").get_data(as_text=True)
    assert '<script src="/static/live.js" defer data-live="worklist"' in html
    supervisor = _client(engine, clock, api, role="supervisor", name="sv1")
    html = supervisor.get("/console/board").get_data(as_text=True)
    assert '<script src="/static/live.js" defer data-live="board"' in html
    polled = supervisor.get("/console/live/board?after=-1").get_json()
    assert polled == {"position": 41, "digest": worklist_digest([], 0)}
    assert api.calls[-1][2]["query"] == {"limit": 500}           # what the board itself reads
    assert supervisor.get("/static/live.js").mimetype == "text/javascript"
