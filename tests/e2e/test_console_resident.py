"""The residents' pages on the real stack (issue #14 §8), over HTTP through the gateway like
tests/e2e/test_console.py: a resident files the 民生在线 form (bad fields named, then registered once
per form: a reload shows the same tracking number and PIN), the cadre resolves the case, the result SMS
carries the signed rating link, the resident answers through it — recorded as an SMS reply is
(`case.followed_up`, via online) and, being unsatisfied, reopened as an SMS reply would be — a second
answer is refused in words, a tampered link is 404 and an expired one 410.

In 和平县 (tests/fixtures/counties/heping.yaml: no quiet hours, the 回访 asked at delivery), so the
result SMS goes out at any hour. The resident browses from an address of their own (127.0.0.61),
so the per-address limits they meet are theirs, not the test session's; a neighbour flooding the
form from 127.0.0.62 meets intake's limit while the resident is served.
"""
from __future__ import annotations

import functools
import http.client
import re
import time
import urllib.request
from datetime import datetime, timedelta, timezone

from services.notify import rating_link
from tests.e2e.test_console import Browser
from tests.e2e.test_notify_flow import case_events, texts_to, wait_for
from tests.support import fresh_phone

RESIDENT_IP = "127.0.0.61"


class _From(urllib.request.HTTPHandler):
    """Connect from a given loopback address: the gateway sees a resident of their own."""

    def __init__(self, source: str):
        super().__init__()
        self.source = source

    def http_open(self, req):
        return self.do_open(functools.partial(http.client.HTTPConnection, source_address=(self.source, 0)), req)


def resident(stack, source: str = RESIDENT_IP) -> Browser:
    browser = Browser(stack.base)
    browser.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(browser.jar), _From(source))
    return browser


def file_online_report(browser: Browser, phone: str, summary: str) -> tuple[dict, str]:
    """The 民生在线 form filled in as a resident does; (tracking number and PIN, the receipt's HTML)."""
    _, html, _ = browser.open("/console/online/heping", keep="online")
    form = {"csrf": Browser.csrf(html), "idem": re.search(r'name="idem" value="([^"]+)"', html).group(1),
            "category": "203", "township": "hp-town", "village": "hp-town.east", "hamlet": "", "summary": summary,
            "phone": phone}
    status, done, _ = browser.open("/console/online/heping", form, keep="online-done")
    assert status == 201, done
    return {"tracking_no": re.search(r'id="tracking-no">([^<]+)<', done).group(1),
            "pin": re.search(r'id="pin">(\d{6})<', done).group(1), "form": form}, done


def wait_heping_case(stack, tracking_no: str, status: str, timeout: float = 30.0) -> dict:
    operator = stack.issue("operator", "heping")
    case_id = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, worklist = stack.request("GET", "/api/v1/worklist?limit=500", token=operator)
        found = next((c for c in worklist.get("cases", []) if c["tracking_no"] == tracking_no), None) if code == 200 else None
        case_id = case_id or (found or {}).get("case_id")
        if case_id:
            code, case = stack.request("GET", f"/api/v1/cases/{case_id}", token=operator)
            if code == 200 and case["status"] == status:
                return case
        time.sleep(0.2)
    raise AssertionError(f"{tracking_no} did not reach {status}")


def test_online_report_then_rating_through_the_signed_link(stack, sms_gateway):
    started = time.monotonic()
    browser = resident(stack)
    # every empty field named, nothing registered
    _, html, _ = browser.open("/console/online/heping")
    status, html, _ = browser.open("/console/online/heping", {
        "csrf": Browser.csrf(html), "idem": "e2e-online-bad", "category": "", "township": "", "summary": "",
        "phone": "12345"})
    assert status == 422 and all(f">{f}</a>：必填" in html for f in ("诉求类别", "乡镇", "您反映的问题")), html
    # intake names what only it can check: the phone, a village outside the township
    status, html, _ = browser.open("/console/online/heping", {
        "csrf": Browser.csrf(html), "idem": "e2e-online-bad-2", "category": "203", "township": "hp-town",
        "village": "nowhere", "summary": "桥面塌陷", "phone": "12345"})
    assert status == 422 and ">手机号</a>" in html and ">村（社区）</a>" in html, html

    # intake's per-address limit counts the resident, not the console: a neighbour (another address)
    # flooding the form with what only intake refuses meets the limit, in words …
    flooder = resident(stack, "127.0.0.62")
    _, html, _ = flooder.open("/console/online/heping")
    bad = {"csrf": Browser.csrf(html), "idem": "e2e-flood", "category": "203", "township": "hp-town", "summary": "x",
           "phone": "12345"}
    statuses, words = [], ""
    for i in range(30):                 # a burst of 20, then one every 10 s
        status, words, _ = flooder.open("/console/online/heping", {**bad, "idem": f"e2e-flood-{i}"})
        statuses.append(status)
        if status == 429:
            break
    assert statuses[0] == 422 and statuses[-1] == 429 and "提交过于频繁" in words, statuses

    # … while this resident, from their own address, is served
    phone = fresh_phone()
    made, done = file_online_report(browser, phone, "东村桥头<script>x</script>路面塌陷，请尽快修")
    assert phone not in done and "查询码只在此显示" in done
    again = browser.open("/console/online/heping", made["form"])        # a reload of the answer: the same case
    assert again[0] == 201 and made["tracking_no"] in again[1] and made["pin"] in again[1]
    case = wait_heping_case(stack, made["tracking_no"], "assigned")
    assert case["channel"] == "online" and case["assignment"]["cadre"] == "hp-c001"
    reported = case_events(stack, case["case_id"])
    assert [e.type for e in reported].count("case.reported") == 1 and reported[0].metadata.actor == "channel:online"
    assert reported[0].data["reporter"]["phone_masked"] != phone and phone not in str(reported[0].data)

    cadre = stack.issue("cadre", "heping", unit="hp-town.east-station", cadre="hp-c001")
    assert stack.request("POST", f"/api/v1/cases/{case['case_id']}/accept", {}, token=cadre)[0] == 200
    code, body = stack.request("POST", f"/api/v1/cases/{case['case_id']}/resolve", {"resolution": "已设置警示并修复桥头路面"},
                               token=cadre)
    assert code == 200, body
    result = wait_for(lambda: next((t for t in texts_to(sms_gateway, phone) if "已办结" in t), None), 30, "the result SMS")
    url = re.search(r"(https?://\S+/console/rate/\S+)", result).group(1)
    assert url.startswith(stack.base + "/console/rate/" + case["case_id"] + "."), url
    path = url[len(stack.base):]

    status, html, _ = browser.open(path, keep="rate")
    assert status == 200 and "已设置警示并修复桥头路面" in html and "实际解决了吗" in html
    csrf = Browser.csrf(html)            # the form token stays the browser's (a cookie): a second tab sends it too
    status, html, _ = browser.open(path, {"csrf": csrf, "rating": "unsatisfied"})
    assert status == 422 and ">问题是否解决</a>：请选择一项" in html
    status, html, _ = browser.open(path, {"csrf": Browser.csrf(html), "solved": "no", "rating": "unsatisfied"},
                                   keep="rated")
    assert status == 201 and "谢谢您的评价" in html and "未解决，不满意" in html, html
    # recorded as an SMS reply is, and reopened as after an SMS reply
    events = wait_for(lambda: (lambda es: es if "case.reopened" in [e.type for e in es] else None)(
        case_events(stack, case["case_id"])), 30, "the reopening")
    rated = [e for e in events if e.type == "case.followed_up"]
    assert len(rated) == 1 and rated[0].data["via"] == "online" and rated[0].data["rating"] == "unsatisfied"
    assert rated[0].data["solved"] is False and rated[0].metadata.actor == "channel:rating_link"

    status, html, _ = browser.open(path, {"csrf": csrf, "solved": "yes", "rating": "satisfied"})
    assert status == 409 and "已经评价过，不能重复评价" in html and "未解决，不满意" in html
    assert [e.type for e in case_events(stack, case["case_id"])].count("case.followed_up") == 1

    token = path.rsplit("/", 1)[1]
    status, html, _ = browser.open(path.replace(token, token[:-2] + ("AA" if not token.endswith("AA") else "BB")))
    assert status == 404 and "评价链接无效" in html
    secret = (stack.run_dir / "rating-link.secret").read_text().strip().encode()
    expired = rating_link.sign(secret, case["case_id"], rated[0].position - 1,
                               datetime.now(timezone.utc) - timedelta(minutes=1))
    status, html, _ = browser.open("/console/rate/" + expired, keep="rate-expired")
    assert status == 410 and "评价链接已过期" in html
    print(f"resident pages e2e: {time.monotonic() - started:.1f} s")
