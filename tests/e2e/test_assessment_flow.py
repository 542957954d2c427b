"""Assessment on the real stack: a cadre logs field visits through the API and sees their own
scorecard, a supervisor sees units, townships, rankings and the explanation of a figure, all as of
the events the stack recorded; bad input names the field and records nothing."""
from __future__ import annotations

import time

from minqing.clock import SYSTEM_CLOCK
from services.assessment.periods import current_period, local_date
from tests.e2e.test_case_flow import _wait_case, report

TZ = "Asia/Shanghai"            # 龙江县's zone (deploy/counties/longjiang.yaml)


def _until(fetch, ok, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if ok(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_visits_scorecards_rankings_and_explanations(stack):
    cadre = stack.issue("cadre", unit="heigang.kaoshan-station", cadre="lj-c002")
    supervisor = stack.issue("supervisor")
    # One clock, the county's zone (issue #12 §11a): the visit's day and the period are the county's
    # today and month, as the stack files its facts; the UTC date is yesterday before 08:00 in China
    # (issue #18 §1b: main refused today's visit then).
    now = SYSTEM_CLOCK.now()
    day, period = local_date(now, TZ).isoformat(), current_period(now, TZ)
    code, visit = stack.request("POST", "/api/v1/visits", {"day": day, "hamlet": "heigang.kaoshan.3", "households": 6},
                                token=cadre)
    assert code == 201 and visit["cadre"] == "lj-c002", visit
    code, again = stack.request("POST", "/api/v1/visits", {"day": day, "hamlet": "heigang.kaoshan.3", "households": 6},
                                token=cadre)
    assert code == 201 and again["event_id"] == visit["event_id"]            # the same visit, once
    code, changed = stack.request("POST", "/api/v1/visits", {"day": day, "hamlet": "heigang.kaoshan.3", "households": 9},
                                  token=cadre)
    assert code == 409 and "households" in changed["error"]["fields"]
    for body, field in (({"day": "2099-01-01", "hamlet": "heigang.kaoshan.3", "households": 1}, "day"),
                        ({"day": day, "hamlet": "nowhere", "households": 1}, "hamlet"),
                        ({"day": day, "hamlet": "heigang.kaoshan.3", "households": -1}, "households")):
        code, err = stack.request("POST", "/api/v1/visits", body, token=cadre)
        assert code == 422 and field in err["error"]["fields"], err

    code, made = stack.request("POST", "/api/v1/cases", report())
    assert code == 201
    _wait_case(stack, made["case_id"], "assigned")
    code, _ = stack.request("POST", f"/api/v1/cases/{made['case_id']}/resolve", {"resolution": "已修复", "on_site": True},
                            token=cadre)
    assert code == 200

    code, mine = _until(lambda: stack.request("GET", f"/api/v1/assessment/longjiang/cadres?period={period}", token=cadre),
                        lambda r: r[0] == 200 and r[1]["cards"] and r[1]["cards"][0]["counts"]["resolved_on_site"] >= 1
                        and r[1]["cards"][0]["visits"]["days"] >= 1)
    assert code == 200 and [c["subject"] for c in mine["cards"]] == ["lj-c002"]       # only their own
    card = mine["cards"][0]
    assert card["visits"]["quota_days_per_year"] == 50 and card["level"] == "village"

    for path in ("units", "townships", "summary", "rankings"):
        code, body = stack.request("GET", f"/api/v1/assessment/longjiang/{path}?period={period}", token=supervisor)
        assert code == 200, body
    code, why = stack.request("GET", f"/api/v1/assessment/longjiang/explain?period={period}&figure=resolved_on_site"
                                     f"&kind=cadre&subject=lj-c002", token=supervisor)
    assert code == 200 and made["case_id"] in {r["case_id"] for r in why["numerator"]}
    code, err = stack.request("GET", "/api/v1/assessment/longjiang/explain?figure=resolved&kind=cadre&subject=lj-c003",
                              token=cadre)
    assert code == 404                                                  # another cadre's figures
    code, err = stack.request("GET", "/api/v1/assessment/longjiang/units?period=2026-13", token=supervisor)
    assert code == 422 and "period" in err["error"]["fields"]
    code, idle = stack.request("GET", f"/api/v1/assessment/longjiang/cadres/lj-c004?period={period}", token=supervisor)
    assert code == 200 and idle["cards"][0]["name"] == "驻村干部丁"           # on the roster: always there
    if not any(idle["cards"][0]["counts"].values()):                   # (other tests may give them work)
        assert "no_recorded_work" in {f["flag"] for f in idle["cards"][0]["flags"]}
    code, err = stack.request("GET", f"/api/v1/assessment/longjiang/cadres/lj-c999?period={period}", token=supervisor)
    assert code == 404                                                  # not on the roster
