"""The console's first loop in the real stack (issue #14): an operator logs in and registers a call,
the cadre logs in, finds it in the worklist, accepts and resolves it, and the resident tracks it on
the phone page.

What is real: the whole `minqing run` stack (gateway, console, intake, routing, relay, RabbitMQ,
PostgreSQL), driven through the gateway by plain HTTP with a cookie jar — the forms as a browser
without JavaScript submits them (the console needs no script to work). Headless Chromium then
renders each page the flow saw (its HTML, with the stack's own CSS) at phone and desktop sizes; the
screenshots land in the test's tmp dir (and in docs/screenshots/ when MINQING_SCREENSHOTS_TO_DOCS=1).
"""
from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


from tests.support import fresh_phone

PAGE_BUDGET = 60 * 1024          # bytes per page before fonts: HTML + CSS + JS (docs/console.md)
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


class Browser:
    """A cookie jar over urllib: what a browser does with forms, redirects and cookies."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.pages: dict[str, str] = {}

    def open(self, path: str, form: dict | None = None, keep: str | None = None) -> tuple[int, str, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base + path, data=data, timeout=30) as resp:
                status, html, url = resp.status, resp.read().decode(), resp.url
        except urllib.error.HTTPError as err:
            status, html, url = err.code, err.read().decode(), err.url
        if keep:
            self.pages[keep] = html
        return status, html, url

    @staticmethod
    def csrf(html: str) -> str:
        return re.search(r'name="csrf" value="([^"]+)"', html).group(1)

    def login(self, username: str, password: str, new_password: str) -> str:
        _, html, _ = self.open("/console/login", keep="login")
        status, html, url = self.open("/console/login", {"csrf": self.csrf(html), "username": username,
                                                          "password": password})
        assert url.endswith("/console/password"), (status, url)
        self.pages["password"] = html
        status, html, url = self.open("/console/password", {"csrf": self.csrf(html), "current": password,
                                                             "password": new_password, "repeat": new_password})
        assert status == 200, html
        return html


def _account(stack, username: str, *args: str, county: str = "longjiang") -> str:
    password = "temporary-pw-2026"      # a temporary password may not contain the username
    done = subprocess.run([sys.executable, "-m", "minqing.shell.cli", "account", "add", username, "--county", county,
                           "--password-stdin", *args], input=password + "\n", env=stack.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return password


def _screenshots(stack, pages: dict[str, str], out: Path) -> list[Path]:
    """Each page the flow received, rendered by one headless Chromium (tests/e2e/cdp.py) with the
    stack's own stylesheet, at phone and desktop sizes."""
    from tests.e2e.cdp import Chromium
    browser = Chromium()      # no chromium fails the test with how to get it: make test installs it
    shots = []
    try:
        for name, html in pages.items():
            page = out / f"{name}.html"
            page.write_text(html.replace("<head>", f'<head><base href="{stack.base}/">', 1))
            browser.open(page.as_uri())
            for size in SIZES:
                png = browser.screenshot(out / f"console-{name}-{size}.png", size)
                assert png.stat().st_size > 2000, f"no screenshot of {name} at {size}"
                shots.append(png)
    finally:
        browser.close()
    return shots


def test_operator_cadre_and_resident_loop(stack, tmp_path):
    op_pw = _account(stack, "op-console", "--role", "operator")
    cadre_pw = _account(stack, "cadre-console", "--role", "cadre", "--cadre", "lj-c002")

    operator = Browser(stack.base)
    html = operator.login("op-console", op_pw, "operator-new-pw-1")
    assert "登记来电诉求" in html
    operator.pages["report"] = html
    # a form error names the field, in words, and registers nothing
    status, html, _ = operator.open("/console/report", {"csrf": Browser.csrf(html), "idem": "x1", "channel": "hotline",
                                                         "category": "202", "township": "", "summary": ""})
    assert status == 422 and "乡镇" in html and "诉求内容" in html and "必填" in html
    operator.pages["report-errors"] = html
    summary = "<script>alert('x')</script> 11屯道路水毁，车辆无法通行"
    phone = fresh_phone()
    status, html, _ = operator.open("/console/report", {
        "csrf": Browser.csrf(html), "idem": "console-e2e-1", "channel": "hotline", "urgency": "normal",
        "category": "202 道路及水毁修复", "township": "heigang", "village": "heigang.kaoshan",
        "hamlet": "heigang.kaoshan.11", "summary": summary, "name": "李四光", "phone": phone}, keep="receipt")
    assert status == 201, html
    tracking_no = re.search(r'id="tracking-no">([^<]+)<', html).group(1)
    pin = re.search(r'id="pin">(\d{6})<', html).group(1)
    assert phone not in html and "李四光" not in html and phone[-4:] in html      # masked after saving

    cadre = Browser(stack.base)
    cadre.login("cadre-console", cadre_pw, "cadre-new-pw-12")
    deadline = time.monotonic() + 30
    while True:
        _, html, _ = cadre.open("/console/worklist")
        if tracking_no in html or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert tracking_no in html, "the case did not reach the cadre's worklist"
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    cadre.pages["worklist"] = html
    # the next caller about the same road: the operator checks for duplicates first (nothing is saved)
    _, form, _ = operator.open("/console/report")
    status, checked, _ = operator.open("/console/report", {
        "csrf": Browser.csrf(form), "idem": "console-e2e-2", "action": "check", "channel": "hotline",
        "category": "202 道路及水毁修复", "township": "heigang", "summary": "桥那边的路又冲坏了"})
    assert status == 200 and "可能重复的诉求" in checked and tracking_no in checked, checked
    operator.pages["report-possible-duplicates"] = checked
    case_id = re.search(r'href="/console/cases/([0-9a-f-]{36})"><strong>' + re.escape(tracking_no), html).group(1)
    _, html, _ = cadre.open(f"/console/cases/{case_id}", keep="case")
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "派单" in html and "靠山村代理代办服务站" in html

    status, html, url = cadre.open(f"/console/cases/{case_id}/accept", {"csrf": Browser.csrf(html), "note": "马上去看"})
    assert status == 200 and url.endswith("?done=accept") and "已接单" in html
    status, html, _ = cadre.open(f"/console/cases/{case_id}/accept", {"csrf": Browser.csrf(html)}, keep="case-409")
    assert status == 409 and "此诉求已被接单" in html           # the 409 explained in words
    status, html, url = cadre.open(f"/console/cases/{case_id}/resolve", {"csrf": Browser.csrf(html),
                                                                         "resolution": "已组织修复道路", "on_site": "1"})
    assert status == 200 and url.endswith("?done=resolve"), html
    cadre.pages["case-resolved"] = html

    resident = Browser(stack.base)
    _, html, _ = resident.open("/console/track", keep="track")
    form_csrf = Browser.csrf(html)          # the double-submit token of the tracking form (the answer has no form)
    status, html, _ = resident.open("/console/track", {"csrf": form_csrf, "tracking_no": tracking_no,
                                                       "pin": pin}, keep="tracked")
    assert status == 200 and tracking_no in html and "已办结" in html, html
    status, html, _ = resident.open("/console/track", {"csrf": form_csrf, "tracking_no": tracking_no,
                                                       "pin": "000000" if pin != "000000" else "111111"})
    assert status == 404 and "查询码不正确" in html

    # the cadre's console read is in the access record like an API read
    code, log = stack.request("GET", f"/api/v1/access-log?case_id={case_id}", token=stack.issue("auditor"))
    assert code == 200 and any(r["actor"] == "cadre:lj-c002" and r["action"] == "case.read" for r in log["reads"])

    # the assessment office drills from a figure to its cases; the auditor verifies the ledger and
    # reads the case's timeline, where the cadre's read stands by name
    auditor = Browser(stack.base)
    html = auditor.login("aud-console", _account(stack, "aud-console", "--role", "auditor"), "auditor-new-pw-1")
    assert "账本核验" in html and 'id="head-position"' in html          # an auditor's home is the ledger
    status, html, _ = auditor.open("/console/audit", {"csrf": Browser.csrf(html), "what": "verify"}, keep="audit")
    assert status == 200 and "核验通过" in html, html
    position = re.search(r'id="head-position">(\d+)<', html).group(1)
    head_hash = re.search(r'id="head-hash">([0-9a-f]{64})<', html).group(1)
    status, html, _ = auditor.open("/console/audit", {"csrf": Browser.csrf(html), "what": "expect",
                                                      "expect_head": f"{position}:{head_hash}"})
    assert status == 200 and "的哈希与已公布的一致" in html
    html = _wait_for(auditor, "/console/assessment?kind=cadre", "subject=lj-c002&amp;figure=resolved")
    assert "驻村干部乙" in html and '<svg class="chart"' in html and "驻村干部乙</text>" in html
    auditor.pages["assessment"] = html
    received = re.search(r'href="(/console/assessment/explain\?kind=cadre&amp;subject=lj-c002&amp;figure=received'
                         r'&amp;period=[0-9-]+)"', html).group(1).replace("&amp;", "&")
    _, html, _ = auditor.open(received, keep="explain")
    assert "驻村干部乙 · 受理" in html and f'href="/console/cases/{case_id}"' in html, html
    _, html, _ = auditor.open("/console/assessment/rankings", keep="rankings")
    assert "村级干部排名" in html
    _, csv_text, _ = auditor.open("/console/assessment.csv?kind=township")
    assert csv_text.lstrip("\ufeff").startswith("period,rules_version,kind,subject,name") and "黑岗乡" in csv_text
    _, html, _ = auditor.open(f"/console/cases/{case_id}", keep="case-audit")
    assert "驻村干部乙（干部）查阅了详情" in html and "cadre-console" in html, html
    _, html, _ = auditor.open(f"/console/audit/access?case_id={case_id}", keep="access-log")
    assert "驻村干部乙" in html and "aud-console" in html

    # page weight: every page with its stylesheet and script stays within the budget
    css = len(urllib.request.urlopen(stack.base + "/static/console.css").read())
    js = len(urllib.request.urlopen(stack.base + "/static/console.js").read())
    pages = {**operator.pages, **cadre.pages, **resident.pages, **auditor.pages}
    for name, html in pages.items():
        assert len(html.encode()) + css + js <= PAGE_BUDGET, f"{name} weighs more than {PAGE_BUDGET} bytes"

    _keep_screenshots(_screenshots(stack, pages, tmp_path))


def _keep_screenshots(shots: list[Path]) -> None:
    if os.environ.get("MINQING_SCREENSHOTS_TO_DOCS") == "1":
        DOCS_SHOTS.mkdir(exist_ok=True)
        for png in shots:
            shutil.copy(png, DOCS_SHOTS / png.name)


def _wait_for(browser: Browser, path: str, needle: str, seconds: float = 30) -> str:
    """The page once it shows `needle` (read models follow the ledger: eventually, not at once)."""
    deadline = time.monotonic() + seconds
    while True:
        _, html, _ = browser.open(path)
        if needle in html or time.monotonic() > deadline:
            return html
        time.sleep(0.5)


def test_supervisor_board_chase_supervise_list_and_redispatch(stack, tmp_path):
    """The supervisor's loop: a case at risk appears on the board by township and unit; the supervisor
    chases it, then supervises it, then lists it, each with a note (a lower level again is a 409 in
    words); a case a cadre returned waits under 'returned' and the supervisor re-dispatches it.

    Overdue needs time to pass: the stack runs on the system clock and no command moves it yet, so the
    at-risk case is 和平县's 道路抢修 (accept within 1 hour — within 和平县's 1-hour warning window, which the
    board takes from the policy, as soon as it is assigned); an overdue case is chased in the browser on
    the demo clock (tests/e2e/test_demo_clock_supervisor.py)."""
    sup_pw = _account(stack, "sup-heping", "--role", "supervisor", county="heping")
    code, urgent = stack.request("POST", "/api/v1/cases", {
        "county": "heping", "channel": "hotline", "category": "203", "summary": "东村桥头路面塌陷",
        "location": {"township": "hp-town", "village": "hp-town.east"},
        "reporter": {"name": "赵六", "phone": fresh_phone()}}, token=stack.issue("operator", "heping"))
    assert code == 201, urgent

    supervisor = Browser(stack.base)
    html = supervisor.login("sup-heping", sup_pw, "supervisor-new-pw-1")
    assert "督办看板" in html                                   # a supervisor's home is the board
    html = _wait_for(supervisor, "/console/board", urgent["tracking_no"])
    assert urgent["tracking_no"] in html and "和平镇 · 东村服务站" in html and "临近期限" in html, html
    supervisor.pages["board"] = html
    path = f"/console/cases/{urgent['case_id']}"
    _, html, _ = supervisor.open(path)
    # a form error names the field, in words, and appends nothing
    status, html, _ = supervisor.open(path + "/supervise", {"csrf": Browser.csrf(html), "level": "chase", "note": " "})
    assert status == 422 and "督办意见" in html and "必填" in html
    for level, word in (("chase", "催办"), ("supervise", "督办"), ("listed", "挂牌督办")):
        status, html, url = supervisor.open(path + "/supervise", {"csrf": Browser.csrf(html), "level": level,
                                                                  "note": f"请尽快处理（{word}）"})
        assert status == 200 and url.endswith("?done=supervise"), (level, html)
    supervisor.pages["case-supervised"] = html
    status, html, _ = supervisor.open(path + "/supervise", {"csrf": Browser.csrf(html), "level": "chase", "note": "再催"},
                                      keep="case-supervise-409")
    assert status == 409 and "督办只能逐级升级" in html
    code, view = stack.request("GET", f"/api/v1/cases/{urgent['case_id']}", token=stack.issue("auditor", "heping"))
    assert [h["type"] for h in view["history"]].count("case.supervised") == 2 and \
        "case.chased" in [h["type"] for h in view["history"]]
    html = _wait_for(supervisor, "/console/board", "挂牌督办")
    assert "挂牌督办" in html                                   # the board shows the pressure applied

    # the holding cadre sees the written reply owed and sends it from the case page
    cadre = Browser(stack.base)
    cadre.login("cadre-heping", _account(stack, "cadre-heping", "--role", "cadre", "--cadre", "hp-c001",
                                         county="heping"), "village-station-pw-1")
    _, html, _ = cadre.open(path, keep="case-reply-owed")
    assert "此诉求处于挂牌督办，须在" in html and 'action="' + path + '/reply"' in html, html
    status, html, url = cadre.open(path + "/reply", {"csrf": Browser.csrf(html), "note": "已设置警示牌，明日抢修",
                                                     "reply_to": "listed"})
    assert status == 200 and url.endswith("?done=reply") and "书面答复已记录" in html, html
    assert "此诉求处于挂牌督办，须在" not in html

    # a cadre returns a case as not theirs; the supervisor re-dispatches it to the township centre
    code, returned = stack.request("POST", "/api/v1/cases", {
        "county": "heping", "channel": "hotline", "category": "202", "summary": "东村路灯不亮",
        "location": {"township": "hp-town", "village": "hp-town.east"},
        "reporter": {"name": "钱七", "phone": fresh_phone()}}, token=stack.issue("operator", "heping"))
    assert code == 201
    html = _wait_for(cadre, f"/console/cases/{returned['case_id']}", "/return\"")    # once routed to the station
    status, html, _ = cadre.open(f"/console/cases/{returned['case_id']}/return", {"csrf": Browser.csrf(html),
                                                                                  "reason": " "})
    assert status == 422 and ">退回理由</a>：必填" in html                     # named in words, nothing sent
    status, html, url = cadre.open(f"/console/cases/{returned['case_id']}/return", {"csrf": Browser.csrf(html),
                                                                                    "reason": "路灯归镇里管"})
    assert status == 200 and url.endswith("?done=return"), html
    html = _wait_for(supervisor, "/console/board", returned["tracking_no"])
    assert "退回待重新派单" in html and returned["tracking_no"] in html
    supervisor.pages["board-returned"] = html
    path = f"/console/cases/{returned['case_id']}"
    _, html, _ = supervisor.open(path, keep="case-returned")
    status, html, _ = supervisor.open(path + "/transfer", {"csrf": Browser.csrf(html), "to_unit": "", "reason": ""})
    assert status == 422 and "转至单位" in html and "理由" in html
    status, html, url = supervisor.open(path + "/transfer", {"csrf": Browser.csrf(html), "to_unit": "hp-town-centre",
                                                             "reason": "镇便民服务中心负责路灯"})
    assert status == 200 and url.endswith("?done=transfer"), html
    assert "和平镇便民服务中心" in _wait_for(supervisor, path, "和平镇便民服务中心")

    _keep_screenshots(_screenshots(stack, {**supervisor.pages, **cadre.pages}, tmp_path))
