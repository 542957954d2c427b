"""The supervisor chases a case that is really overdue, clicked through in headless Chromium (issue
#14's done-when: "the supervisor chases an overdue case"), on the session's demo-clock stack
(`demo_stack`, shared with tests/e2e/test_demo_clock.py: no stack of its own).

A resident's call is registered for 靠山村 and assigned to its station; nobody accepts it; the admin
moves the demo clock past the acceptance deadline with `minqing clock advance` (as an admin types it);
the township supervisor (黑岗乡) finds the case on the board under 已超期, opens it and chases it (催办)
with a note; the holding cadre's case page shows the 催办 in its timeline. Each step's page is saved at
phone and desktop sizes (docs/screenshots/ with MINQING_SCREENSHOTS_TO_DOCS=1).

The clock is advanced from wherever it stands (after test_demo_clock.py's instants, or at the stack's
start when this module runs alone), by exactly what the case's deadline needs.
"""
from __future__ import annotations

import math
import urllib.request

import pytest

from tests.e2e.demo_stacks import clock, reissue_tokens, wait_for
from tests.e2e.test_console import _keep_screenshots
from tests.e2e.test_console_browser import Person, browser  # noqa: F401  (one Chromium for the module)
from tests.support import fresh_phone

pytestmark = [pytest.mark.postgres, pytest.mark.rabbit]
PASSWORD = "supervisor-demo-pw-1"


def _engine(stack):
    from minqing.db import make_engine
    return make_engine(stack.env["MINQING_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1))


def _demo_now(stack):
    from minqing import democlock
    from minqing.ledger import Ledger
    engine = _engine(stack)
    try:
        return democlock.current(Ledger(engine))[0]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def people(demo_stack):
    """The township supervisor and the village cadre, made in-process with their own passwords (no
    first-login change: the password-change flow is clicked in tests/e2e/test_console_browser.py)."""
    from services.console import accounts
    engine = _engine(demo_stack)
    try:
        accounts.ensure(engine, "sup-heigang", PASSWORD, "supervisor", "longjiang", unit="heigang-centre")
        accounts.ensure(engine, "cadre-kaoshan", PASSWORD, "cadre", "longjiang", unit="heigang.kaoshan-station",
                        cadre="lj-c002")
    finally:
        engine.dispose()


def _login(b, base: str, username: str) -> None:
    b.open(base + "/console/login")
    b.fill("#f-username", username)
    b.fill("#f-password", PASSWORD)
    b.click("main button[type=submit]")
    assert "/console/login" not in b.url, b.text("main")


def test_the_supervisor_chases_an_overdue_case_in_the_browser(demo_stack, people, browser, tmp_path):
    stack, b = demo_stack, browser
    reissue_tokens(stack, _demo_now(stack))            # the desks' tokens, valid at the demo time
    code, filed = stack.request("POST", "/api/v1/cases", {
        "county": "longjiang", "channel": "hotline", "category": "202", "summary": "靠山村桥面塌陷，无人受理",
        "location": {"township": "heigang", "village": "heigang.kaoshan"},
        "reporter": {"name": "吴九", "phone": fresh_phone()}})
    assert code == 201, filed
    tracking_no = filed["tracking_no"]
    held = wait_for(lambda: (c := stack.request("GET", f"/api/v1/cases/{filed['case_id']}")[1])["status"] == "assigned"
                    and c, what="the assignment")
    assert held["assignment"]["unit"] == "heigang.kaoshan-station"

    # nobody accepts it: the admin moves the clock just past the acceptance deadline
    from minqing.clock import parse_instant
    late = parse_instant(held["assignment"]["response_due"]) - _demo_now(stack)
    clock(stack, "advance", f"{math.ceil(late.total_seconds() / 60) + 30}m")
    reissue_tokens(stack, _demo_now(stack))

    shots: list = []
    me = Person(b, stack.base, shots, tmp_path)
    Person.static = sum(len(urllib.request.urlopen(stack.base + f"/static/console.{ext}").read()) for ext in ("css", "js"))
    _login(b, stack.base, "sup-heigang")
    assert "/console/board" in b.url
    me.until("/console/board", tracking_no)
    card = b.js(f"[...document.querySelectorAll('.card')].find(c => c.innerText.includes('{tracking_no}'))?.innerText")
    assert card and "已超期" in card, b.text("main")
    assert "黑岗乡 · 靠山村代理代办服务站" in b.text("main")
    me.shoot("overdue-board")
    b.click(f'a[href="/console/cases/{filed["case_id"]}"]')
    b.fill("#f-level", "chase")
    b.fill("#f-supervise_note", "已超期未受理，请今日内联系村民")
    b.click('form[action$="/supervise"] button')
    assert "已督办" in b.text("[role=status]"), b.text("main")
    me.shoot("overdue-chased")
    b.click('form[action="/console/logout"] button')

    # the holding cadre sees the chase on the case's page
    _login(b, stack.base, "cadre-kaoshan")
    b.open(stack.base + f"/console/cases/{filed['case_id']}")
    timeline = b.text(".timeline")
    assert "催办" in timeline, timeline
    me.shoot("overdue-cadre-case")
    b.click('form[action="/console/logout"] button')
    code, view = stack.request("GET", f"/api/v1/cases/{filed['case_id']}", token=stack.tokens["auditor"])
    chased = [h for h in view["history"] if h["type"] == "case.chased"]
    assert len(chased) == 1 and "case.overdue" in [h["type"] for h in view["history"]]
    _keep_screenshots(shots)
