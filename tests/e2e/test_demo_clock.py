"""The running stack on the demo clock, at fixed instants (issue #12: the suite passes at any instant;
issue #17.1: every timer, deadline, quiet hour and follow-up follows the demo clock).

One stack (the session's `demo_stack`, tests/e2e/conftest.py), its clock stopped (rate 0) and set forward
from test to test, in time order:
a public holiday, three working days of a neglected dispute, 03:00 inside quiet hours, a month's last
evening in UTC (already December in China), and New Year's Eve."""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.demo_stacks import clock, set_clock, utc, wait_for
from tests.support import fresh_phone

pytestmark = [pytest.mark.postgres, pytest.mark.rabbit]
CHINA = ZoneInfo("Asia/Shanghai")
CADRE = "lj-c002"            # 靠山村代理代办服务站, the demo cadre token's holder


def report(stack, phone: str, category: str = "202", place: dict | None = None) -> dict:
    status, body = stack.request("POST", "/api/v1/cases", {
        "county": "longjiang", "channel": "hotline", "category": category, "summary": "道路水毁，车辆无法通行",
        "location": place or {"township": "heigang", "village": "heigang.kaoshan"},
        "reporter": {"name": "张三丰", "phone": phone}})
    assert status == 201, body
    return body


def case(stack, case_id: str) -> dict:
    status, body = stack.request("GET", f"/api/v1/cases/{case_id}")
    assert status == 200, body
    return body


def assigned(stack, case_id: str) -> dict:
    return wait_for(lambda: (c := case(stack, case_id))["status"] == "assigned" and c, what="the assignment")


def texts_to(gateway, phone: str) -> list[str]:
    return [b["text"] for b in gateway.json_bodies("/sms") if b["to"] == phone]


def full_loop(stack, sms_gateway, morning: str | None = None) -> tuple[dict, dict]:
    """report → assign → accept → resolve → follow-up (回访), as one resident and the demo cadre.
    With `morning`, the loop runs inside quiet hours: the result waits until the clock reaches it."""
    phone = fresh_phone()
    filed = report(stack, phone)
    holder = assigned(stack, filed["case_id"])
    assert holder["assignment"]["cadre"] == CADRE
    cadre = stack.tokens["cadre"]
    assert stack.request("POST", f"/api/v1/cases/{filed['case_id']}/accept", {}, token=cadre)[0] == 200
    status, body = stack.request("POST", f"/api/v1/cases/{filed['case_id']}/resolve",
                                 {"resolution": "已组织修复道路", "on_site": True}, token=cadre)
    assert status == 200, body
    if morning:
        import time
        time.sleep(1.5)
        assert not any("已办结" in t for t in texts_to(sms_gateway, phone)), "sent inside quiet hours"
        set_clock(stack, morning)
    wait_for(lambda: any("已办结" in t for t in texts_to(sms_gateway, phone)), what="the result SMS")
    status, body = stack.request("POST", f"/api/v1/cases/{filed['case_id']}/follow-up", {"rating": "1"})
    assert status == 201, body
    return filed, case(stack, filed["case_id"])


def local_day(instant: str) -> str:
    return utc(instant).astimezone(CHINA).strftime("%Y%m%d")


def test_clock_show_names_the_demo_time_in_the_county_zone(demo_stack):
    assert "2026-09-30 08:00:00 CST" in clock(demo_stack, "show")


def test_a_public_holiday_counts_no_working_days(demo_stack, sms_gateway):
    set_clock(demo_stack, "2026-10-01T02:00Z")          # 10:00 on National Day
    filed, final = full_loop(demo_stack, sms_gateway)
    assert filed["tracking_no"].startswith("LJ-20261001-")
    assert final["status"] == "followed_up"
    first = next(h for h in final["history"] if h["type"] == "case.assigned")
    assert first["at"].startswith("2026-10-01T10:00:00+08:00")   # shown in the county's zone (issue #18.1)
    due = utc(final["assignment"]["resolution_due"]).astimezone(CHINA)
    # 5 working days from the holiday: Oct 8, 9, 10 (make-up Saturday), 12, 13 — never inside Oct 1–7
    assert due.date().isoformat() >= "2026-10-13", due


def test_three_working_days_of_neglect_warn_lapse_and_escalate(demo_stack):
    set_clock(demo_stack, "2026-11-09T09:00+08:00")     # a Monday morning
    filed = report(demo_stack, fresh_phone(), category="101",
                   place={"township": "heigang", "village": "heigang.kaoshan", "hamlet": "heigang.kaoshan.11"})
    start = assigned(demo_stack, filed["case_id"])
    assert start["assignment"]["tier"] == "hamlet"
    for _ in range(4):                                   # nobody acts; the admin moves the clock a day at a time
        clock(demo_stack, "advance", "1d")
    types = wait_for(lambda: (t := {h["type"] for h in case(demo_stack, filed["case_id"])["history"]})
                     >= {"case.deadline_warned", "case.overdue", "case.escalated"} and t, timeout=30,
                     what="warnings, lapses and an escalation")
    assert types >= {"case.deadline_warned", "case.overdue", "case.escalated"}
    routing = demo_stack.request("GET", f"/api/v1/cases/{filed['case_id']}/routing")[1]
    now = case(demo_stack, filed["case_id"])
    assert now["assignment"]["tier"] == "village", routing
    escalated = [h for h in now["history"] if h["type"] == "case.escalated"]
    assert escalated and all(h["at"] > "2026-11-11" for h in escalated)


def test_inside_quiet_hours_a_resident_message_waits_until_eight(demo_stack, sms_gateway):
    set_clock(demo_stack, "2026-11-18T03:00+08:00")
    phone = fresh_phone()
    filed = report(demo_stack, phone)
    assigned(demo_stack, filed["case_id"])
    import time
    time.sleep(2.0)                                      # notify's loop runs every 0.3 s
    assert texts_to(sms_gateway, phone) == []            # the receipt is held back at 03:00
    set_clock(demo_stack, "2026-11-18T07:59+08:00")
    time.sleep(1.0)
    assert texts_to(sms_gateway, phone) == []
    set_clock(demo_stack, "2026-11-18T08:00+08:00")
    wait_for(lambda: any(filed["tracking_no"] in t for t in texts_to(sms_gateway, phone)), what="the receipt at 08:00")


def test_a_months_last_evening_in_utc_is_already_december_in_china(demo_stack, sms_gateway):
    set_clock(demo_stack, "2026-11-30T16:30Z")          # 00:30 on 1 December in China: quiet hours
    filed, final = full_loop(demo_stack, sms_gateway, morning="2026-12-01T08:00+08:00")
    assert filed["tracking_no"].startswith("LJ-20261201-")
    assert local_day(final["reported_at"]) == "20261201"
    auditor = demo_stack.tokens["auditor"]

    def received(period):
        status, body = demo_stack.request("GET", f"/api/v1/assessment/longjiang/cadres/{CADRE}?period={period}",
                                          token=auditor)
        return body["cards"][0]["counts"] if status == 200 else {}
    december = wait_for(lambda: (c := received("2026-12")).get("resolved") and c, what="the December scorecard")
    assert december["received"] == 1                    # filed under the county's month, not UTC's November
    assert "12月" in "".join(line for line in demo_stack.logs().splitlines() if filed["tracking_no"] in line
                             and "派单" in line)


def test_new_years_eve_in_utc_is_the_new_year_in_china(demo_stack, sms_gateway):
    set_clock(demo_stack, "2026-12-31T16:30Z")
    filed, final = full_loop(demo_stack, sms_gateway, morning="2027-01-01T08:00+08:00")
    assert filed["tracking_no"].startswith("LJ-20270101-")
    assert final["status"] == "followed_up"
    assert local_day(final["registered_at"]) == "20270101"
