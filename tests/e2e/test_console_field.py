"""Field capture without a network and the live worklist (issue #14 §9, §10), in headless Chromium
against the whole stack (the session's `stack`), driven over the DevTools protocol (tests/e2e/cdp.py).

- A cadre at a market-day post (seed 003: 逢集日…设立便民服务岗) opens the field page while online
  (its service worker keeps the page), loses the network — the page and the worker both offline —
  reloads the page from the worker's cache, records a report and a field visit (seed 000's 民情下访),
  and gets the network back: the report is registered once, with the time it was recorded (not the
  time it was sent), and the visit is logged for the county's day of its capture.
- The answer of a sync is lost on the way back (DevTools' Fetch domain fails the response after the
  console answered): the phone keeps the entry as waiting and sends it again; the ledger holds one
  case, and the tracking number the phone shows is the one the lost answer carried.
- The cadre's worklist, left open, shows a case registered meanwhile by itself (static/live.js).

Screenshots at phone and desktop sizes (docs/screenshots/ with MINQING_SCREENSHOTS_TO_DOCS=1).
"""
from __future__ import annotations

import base64
import json
import secrets
import time

import pytest

from tests.e2e.test_console import PAGE_BUDGET, _keep_screenshots
from tests.support import fresh_phone

PASSWORD = "market-post-pw-2026"


@pytest.fixture(scope="module")
def engine(stack):
    from minqing.db import make_engine
    url = stack.env["MINQING_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def cadre(engine):
    """A cadre of 靠山村代理代办服务站 (lj-c002), made in-process as `minqing account add` does, the first
    password already changed (tests/e2e/test_console_browser.py clicks through that)."""
    from services.console import accounts
    account = accounts.add(engine, "field-cadre", "first-password-1", "cadre", "longjiang",
                           unit="heigang.kaoshan-station", cadre="lj-c002")
    accounts.change_password(engine, account.account_id, "first-password-1", PASSWORD)
    return "field-cadre"


@pytest.fixture(scope="module")
def browser(stack, cadre):
    from tests.e2e.cdp import Chromium
    chromium = Chromium()
    chromium.open(stack.base + "/console/login")
    chromium.fill("#f-username", cadre)
    chromium.fill("#f-password", PASSWORD)
    chromium.click("main button[type=submit]")
    assert chromium.url.endswith("/console/worklist"), chromium.text("main")
    yield chromium
    chromium.close()


def _until(check, seconds: float = 30, every: float = 0.2):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def _tag() -> str:
    """Letters only: digits in a summary may be masked as a phone number on the way in."""
    return "".join(secrets.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(10))


def _entries(b) -> list[dict]:
    return b.js("JSON.parse(localStorage.getItem('minqing.field.field-cadre') || '[]')")


def _reported(engine, marker: str) -> list[dict]:
    """The case.reported events whose summary holds `marker`, read from the ledger as an auditor would."""
    from sqlalchemy import select
    from minqing.db import read_transaction
    from minqing.ledger import events_table
    with read_transaction(engine) as conn:
        rows = conn.execute(select(events_table.c.data).where(events_table.c.type == "case.reported")
                            .where(events_table.c.data.contains(marker))).all()
    return [json.loads(r.data) if isinstance(r.data, str) else r.data for r in rows]


def _visits(engine, cadre: str, hamlet: str) -> list[dict]:
    from sqlalchemy import select
    from minqing.db import read_transaction
    from minqing.ledger import events_table
    with read_transaction(engine) as conn:
        rows = conn.execute(select(events_table.c.data).where(events_table.c.type == "visit.logged")
                            .where(events_table.c.stream == f"cadre-{cadre}")).all()
    return [d for d in (json.loads(r.data) for r in rows) if d["hamlet"] == hamlet]


def _county_day(instant: str) -> str:
    from zoneinfo import ZoneInfo
    from minqing.clock import parse_instant
    return parse_instant(instant).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()


def _capture(b, summary: str) -> None:
    b.fill("#f-channel", "market_post")
    b.fill("#f-category", "202")
    b.fill("#f-township", "heigang")
    b.fill("#f-village", "heigang.kaoshan")
    b.fill("#f-hamlet", "heigang.kaoshan.11")
    b.fill("#f-summary", summary)
    b.fill("#f-name", "周八")
    b.fill("#f-phone", fresh_phone())
    b.click("#field-report button[type=submit]", navigates=False)


def _shoot(b, name: str, shots: list, out) -> None:
    for size in ("phone", "desktop"):
        shots.append(b.screenshot(out / f"console-field-{name}-{size}.png", size))
    b.size("desktop")


def _worker_session(b) -> str:
    """The field page's service worker, attached in flat mode (so its own fetches can go offline too)."""
    def find():
        targets = b.send("Target.getTargets")["targetInfos"]
        return next((t for t in targets if t["type"] == "service_worker" and "/console/field/sw.js" in t["url"]), None)
    worker = _until(find, 15)
    assert worker, "the field page's service worker did not start"
    return b.send("Target.attachToTarget", targetId=worker["targetId"], flatten=True)["sessionId"]


def test_a_report_captured_offline_registers_once_with_its_original_time(stack, engine, browser, tmp_path):
    b, shots = browser, []
    b.open(stack.base + "/console/field/")
    assert b.js("navigator.serviceWorker.ready.then(r => !!r.active)")
    assert _until(lambda: b.js("caches.match('/static/field.js').then(r => !!r)")), "the worker kept nothing"
    assert b.js("document.querySelectorAll('script:not([src])').length") == 0
    weight = len(b.html().encode()) + sum(
        len(b.js(f"fetch('{p}').then(r => r.text())").encode()) for p in ("/static/console.css", "/static/console.js",
                                                                           "/static/field.js"))
    assert weight <= PAGE_BUDGET, weight
    worker = _worker_session(b)
    assert b.send("Page.getInstallabilityErrors")["installabilityErrors"] == []       # Chromium would install it

    # no network at all: the page comes from the worker's cache, the report stays on the phone
    b.offline(True, worker)
    b.open(stack.base + "/console/field/")
    assert b.js("navigator.onLine") is False and b.text("h1").startswith("下访登记")
    marker = "集市东口路面塌陷" + _tag()
    _capture(b, marker)
    waiting = _until(lambda: [e for e in _entries(b) if e["summary"] == marker])
    assert waiting and waiting[0]["state"] == "waiting", _entries(b)
    captured_at = waiting[0]["captured_at"]
    assert marker in b.text("#field-waiting")
    b.js("document.querySelector('#field-visit').closest('details').open = true")   # and the visit itself
    b.fill("#f-visit_hamlet", "heigang.kaoshan")   # a village: no other test visits it
    b.fill("#f-households", "7")
    b.click("#field-visit button[type=submit]", navigates=False)
    visit = _until(lambda: [e for e in _entries(b) if e["kind"] == "visit" and e["state"] == "waiting"])
    assert visit, _entries(b)
    _shoot(b, "offline", shots, tmp_path)
    time.sleep(2)                        # the capture's time and the sync's must differ to tell them apart
    assert _reported(engine, marker) == []

    # the network returns: sent once, registered with the time it was recorded
    sent_from = time.time()
    b.offline(False, worker)
    synced = _until(lambda: [e for e in _entries(b) if e["key"] == waiting[0]["key"] and e["state"] == "synced"])
    assert synced, _entries(b)
    entry = synced[0]
    assert entry["name"] is None and entry["phone"] is None and entry["summary"] is None    # personal data left the phone
    cases = _reported(engine, marker)
    assert len(cases) == 1, cases
    case = cases[0]
    from minqing.clock import parse_instant
    assert case["tracking_no"] == entry["tracking_no"] and case["channel"] == "market_post"
    assert parse_instant(case["reported_at"]) == parse_instant(captured_at) and parse_instant(captured_at).timestamp() < sent_from
    assert case["paper_form_ref"] == f"field-capture:{entry['key']}"
    assert entry["tracking_no"] in b.text("#field-synced")
    day = _until(lambda: [e for e in _entries(b) if e["key"] == visit[0]["key"] and e["state"] == "synced"], 10)
    assert day, _entries(b)
    assert _visits(engine, "lj-c002", "heigang.kaoshan") == [{"cadre": "lj-c002", "county": "longjiang",
                                                                "day": _county_day(captured_at),
                                                                "hamlet": "heigang.kaoshan", "households": 7}]
    b.js("new Promise(r => setTimeout(r, 300))")
    _shoot(b, "synced", shots, tmp_path)
    time.sleep(1)
    assert len(_reported(engine, marker)) == 1                # the page's later syncs send nothing again

    # the answer is lost on its way back: sent again, one case, the number the lost answer carried
    b.send("Fetch.enable", patterns=[{"urlPattern": "*/console/field/sync", "requestStage": "Response"}])
    again = "集市西口路灯不亮" + _tag()
    _capture(b, again)
    paused = b.wait_event("Fetch.requestPaused")["params"]
    assert paused.get("responseStatusCode") == 201, paused
    lost = b.send("Fetch.getResponseBody", requestId=paused["requestId"])
    lost = json.loads(base64.b64decode(lost["body"]) if lost.get("base64Encoded") else lost["body"])
    b.send("Fetch.failRequest", requestId=paused["requestId"], errorReason="ConnectionReset")
    b.send("Fetch.disable")
    assert _until(lambda: not b.js("document.querySelector('.captures').hidden")
                  and [e for e in _entries(b) if e["summary"] == again and e["state"] == "waiting"], 5)
    assert len(_reported(engine, again)) == 1                 # registered, though the phone does not know it
    b.click("#field-sync", navigates=False)
    resent = _until(lambda: [e for e in _entries(b) if e.get("tracking_no") == lost["tracking_no"]
                             and e["state"] == "synced"])
    assert resent, (_entries(b), lost)
    assert len(_reported(engine, again)) == 1
    _keep_screenshots(shots)


def test_the_worklist_shows_a_new_case_by_itself(stack, browser, tmp_path):
    b, shots = browser, []
    b.open(stack.base + "/console/worklist")
    page = b.js("performance.timeOrigin")
    b.js("document.getElementById('main').setAttribute('data-live-every', '1')")   # 15 s by default
    _until(lambda: b.js("document.querySelector('.live-note') !== null"), 5)
    time.sleep(1.5)                                                     # the first poll sets the baseline
    code, case = stack.request("POST", "/api/v1/cases", {
        "county": "longjiang", "channel": "hotline", "category": "202", "summary": "实时更新用例",
        "location": {"township": "黑岗乡", "village": "靠山村", "hamlet": "靠山村11屯"},
        "reporter": {"name": "王五", "phone": fresh_phone()}})
    assert code == 201, case
    shown = _until(lambda: case["tracking_no"] in b.text("main"), 30)
    assert shown, b.text("main")
    assert b.js("performance.timeOrigin") == page                      # the same page, not a reload
    assert "已自动更新" in b.text(".live-note")
    _shoot(b, "worklist-live", shots, tmp_path)
    _keep_screenshots(shots)
