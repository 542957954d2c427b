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

import pytest

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


def _account(stack, username: str, *args: str) -> str:
    password = "temporary-pw-2026"      # a temporary password may not contain the username
    done = subprocess.run([sys.executable, "-m", "minqing.cli", "account", "add", username, "--county", "longjiang",
                           "--password-stdin", *args], input=password + "\n", env=stack.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return password


def _screenshots(stack, pages: dict[str, str], out: Path) -> list[Path]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs it)")
    shots = []
    for name, html in pages.items():
        page = out / f"{name}.html"
        page.write_text(html.replace("<head>", f'<head><base href="{stack.base}/">', 1))
        for size, (width, height) in SIZES.items():
            png = out / f"console-{name}-{size}.png"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()],
                           capture_output=True, timeout=120)
            assert png.exists() and png.stat().st_size > 2000, f"no screenshot of {name} at {size}"
            shots.append(png)
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
    status, html, _ = resident.open("/console/track", {"csrf": Browser.csrf(html), "tracking_no": tracking_no,
                                                       "pin": pin}, keep="tracked")
    assert status == 200 and tracking_no in html and "已办结" in html, html
    status, html, _ = resident.open("/console/track", {"csrf": Browser.csrf(html), "tracking_no": tracking_no,
                                                       "pin": "000000" if pin != "000000" else "111111"})
    assert status == 404 and "查询码不正确" in html

    # the cadre's console read is in the access record like an API read
    code, log = stack.request("GET", f"/api/v1/access-log?case_id={case_id}", token=stack.issue("auditor"))
    assert code == 200 and any(r["actor"] == "cadre:lj-c002" and r["action"] == "case.read" for r in log["reads"])

    # page weight: every page with its stylesheet and script stays within the budget
    css = len(urllib.request.urlopen(stack.base + "/static/console.css").read())
    js = len(urllib.request.urlopen(stack.base + "/static/console.js").read())
    pages = {**operator.pages, **cadre.pages, **resident.pages}
    for name, html in pages.items():
        assert len(html.encode()) + css + js <= PAGE_BUDGET, f"{name} weighs more than {PAGE_BUDGET} bytes"

    shots = _screenshots(stack, pages, tmp_path)
    if os.environ.get("MINQING_SCREENSHOTS_TO_DOCS") == "1":
        DOCS_SHOTS.mkdir(exist_ok=True)
        for png in shots:
            shutil.copy(png, DOCS_SHOTS / png.name)
