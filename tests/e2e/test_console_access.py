"""The authorisation matrix of the console's routes (issue #14), as tests/e2e/test_access_control.py
has the API's: each role's people, logged in through the console, against each page and action."""
from __future__ import annotations

import pytest

from tests.e2e.test_console import Browser, _account

ROLES = {   # name: CLI arguments of `minqing account add`
    "operator": ("--role", "operator"),
    "cadre": ("--role", "cadre", "--cadre", "lj-c002"),
    "other_cadre": ("--role", "cadre", "--cadre", "lj-c006"),
    "supervisor": ("--role", "supervisor"),
    "auditor": ("--role", "auditor"),
    "admin": ("--role", "admin"),
}
# page → who gets it (200); everyone else logged in gets 403, anonymous visitors the login page
PAGES = {
    "/console/report": {"operator", "cadre", "other_cadre"},
    "/console/worklist": {"operator", "cadre", "other_cadre", "supervisor"},
    "/console/board": {"supervisor"},
    "/console/agenda": {"supervisor"},
    # the assessment office's pages follow assessment.read (a cadre's cards are their own: the API's rule)
    "/console/assessment": {"cadre", "other_cadre", "supervisor", "auditor"},
    "/console/assessment?kind=township": {"cadre", "other_cadre", "supervisor", "auditor"},
    "/console/assessment/rankings": {"cadre", "other_cadre", "supervisor", "auditor"},
    "/console/assessment.csv": {"cadre", "other_cadre", "supervisor", "auditor"},
    "/console/assessment/explain?kind=cadre&subject=lj-c002&figure=received": {"cadre", "supervisor", "auditor"},
    # the auditor's
    "/console/audit": {"auditor"},
    "/console/audit/access": {"auditor"},
    "/console/admin/accounts": {"admin"},
    "/console/admin/subscriptions": {"admin"},
    "/console/admin/tokens": {"admin"},
    "/console/admin/policy": {"admin", "auditor"},        # policy.read
    "/console/admin/parked": {"admin"},                   # parked.manage
    "/console/totp": set(ROLES),                          # everyone's own second factor
    # field capture (a cadre's own: visit.log) and the live lists' polls (as their pages)
    "/console/field/": {"cadre", "other_cadre"},
    "/console/field/token": {"cadre", "other_cadre"},
    "/console/live/worklist": {"operator", "cadre", "other_cadre", "supervisor"},
    "/console/live/board": {"supervisor"},
}
# pages where the API's object rule answers a role the page is offered to: 404, as for what does not exist
NOT_FOUND = {("/console/assessment/explain?kind=cadre&subject=lj-c002&figure=received", "other_cadre")}


@pytest.fixture(scope="module")
def people(stack):
    out = {}
    for name, args in ROLES.items():
        password = _account(stack, f"acl-{name}", *args)
        browser = Browser(stack.base)
        browser.login(f"acl-{name}", password, f"{name}-changed-pw-1")
        out[name] = browser
    return out


@pytest.mark.parametrize("path", sorted(PAGES))
def test_pages_by_role(stack, people, path):
    for name, browser in people.items():
        status, _, _ = browser.open(path)
        want = 200 if name in PAGES[path] else 404 if (path, name) in NOT_FOUND else 403
        assert status == want, (name, path, status)
    status, html, url = Browser(stack.base).open(path)
    assert url.endswith("/console/login") and 'name="password"' in html


def test_case_pages_and_actions_follow_the_api_rules(stack, people):
    code, case = stack.request("POST", "/api/v1/cases", {
        "county": "longjiang", "channel": "hotline", "category": "202", "summary": "权限矩阵用例",
        "location": {"township": "黑岗乡", "village": "靠山村", "hamlet": "靠山村11屯"},
        "reporter": {"name": "王五", "phone": "13900001111"}})
    assert code == 201
    path = f"/console/cases/{case['case_id']}"
    for _ in range(60):
        status, html, _ = people["cadre"].open(path)
        if "靠山村代理代办服务站" in html:
            break
    expected = {"operator": 200, "cadre": 200, "other_cadre": 404, "supervisor": 200, "auditor": 200}
    for name, want in expected.items():
        assert people[name].open(path)[0] == want, name
    # actions: the role rule first (403), then the API's object rule (409 for a cadre who does not hold it)
    for name in ("operator", "supervisor", "auditor"):
        _, html, _ = people[name].open(path)
        assert people[name].open(path + "/accept", {"csrf": Browser.csrf(html)})[0] == 403, name
    _, html, _ = people["cadre"].open(path)
    assert people["other_cadre"].open(path + "/accept", {"csrf": Browser.csrf(html)})[0] == 403   # not its csrf
    _, html, _ = people["other_cadre"].open("/console/worklist")
    assert people["other_cadre"].open(path + "/accept", {"csrf": Browser.csrf(html)})[0] == 404
    assert Browser(stack.base).open(path + "/accept", {"csrf": "x"})[2].endswith("/console/login")
    # the supervisor's actions: chase/supervise is the supervisor's alone (403 for every other role);
    # transfer is also a holding cadre's, so another unit's cadre gets the API's 404 (cannot see it)
    for name in ("operator", "cadre", "other_cadre", "auditor"):
        _, html, _ = people[name].open("/console/worklist" if name != "auditor" else path)
        assert people[name].open(path + "/supervise", {"csrf": Browser.csrf(html), "level": "chase",
                                                       "note": "请尽快"})[0] == 403, name
    for name in ("operator", "auditor"):
        _, html, _ = people[name].open(path)
        assert people[name].open(path + "/transfer", {"csrf": Browser.csrf(html), "to_unit": "heigang-centre",
                                                      "reason": "转乡里"})[0] == 403, name
    _, html, _ = people["other_cadre"].open("/console/worklist")
    assert people["other_cadre"].open(path + "/transfer", {"csrf": Browser.csrf(html), "to_unit": "heigang-centre",
                                                           "reason": "转乡里"})[0] == 404
    _, html, _ = people["supervisor"].open(path)
    status, html, url = people["supervisor"].open(path + "/supervise", {"csrf": Browser.csrf(html), "level": "chase",
                                                                        "note": "请尽快"})
    assert status == 200 and url.endswith("?done=supervise"), html
    assert Browser(stack.base).open(path + "/supervise", {"csrf": "x"})[2].endswith("/console/login")


def test_only_an_admin_retries_a_parked_event(stack, people):
    for name in ("operator", "cadre", "supervisor", "auditor"):
        _, html, _ = people[name].open("/console/totp")
        assert people[name].open("/console/admin/parked", {"csrf": Browser.csrf(html), "service": "routing",
                                                           "position": "1"})[0] == 403, name
    assert Browser(stack.base).open("/console/admin/parked", {"csrf": "x"})[2].endswith("/console/login")


def test_only_an_auditor_runs_the_ledger_verification(stack, people):
    for name in ("operator", "cadre", "supervisor"):
        _, html, _ = people[name].open("/console/worklist")
        assert people[name].open("/console/audit", {"csrf": Browser.csrf(html), "what": "verify"})[0] == 403, name
    assert Browser(stack.base).open("/console/audit", {"csrf": "x", "what": "verify"})[2].endswith("/console/login")
    _, html, _ = people["auditor"].open("/console/audit")
    status, html, _ = people["auditor"].open("/console/audit", {"csrf": Browser.csrf(html), "what": "verify"})
    assert status == 200 and "核验通过" in html


# the residents' public pages (issue #14 §8): the same answer whoever asks, logged in or not
PUBLIC = {"/console/track": 200, "/console/online/longjiang": 200, "/console/online/nowhere": 404,
          "/console/rate/not-a-link": 404}


@pytest.mark.parametrize("path", sorted(PUBLIC))
def test_public_pages_answer_everyone_alike(stack, people, path):
    for name, browser in [*people.items(), ("anonymous", Browser(stack.base))]:
        status, html, url = browser.open(path)
        assert status == PUBLIC[path] and url.endswith(path), (name, path, status)
    if path in ("/console/online/longjiang", "/console/rate/not-a-link"):
        assert Browser(stack.base).open(path, {"summary": "x"})[0] == 403      # no form token: nothing is sent
def test_only_a_cadre_syncs_field_captures(stack, people):
    """The sync takes JSON with the session's CSRF token in X-CSRF-Token: every other role is refused
    before anything is read, a cadre with a forged token too, and a visitor without a session gets 401
    (the page's script then asks the cadre to log in again)."""
    import json
    import urllib.error
    import urllib.request
    entry = json.dumps({"key": "0b7d4c1e-5f7a-4b1c-9a52-2f8e7d6c5b4a", "kind": "visit", "hamlet": "heigang.kaoshan",
                        "households": 3}).encode()
    for name, browser in people.items():
        request = urllib.request.Request(stack.base + "/console/field/sync", data=entry, method="POST",
                                         headers={"Content-Type": "application/json", "X-CSRF-Token": "forged"})
        try:
            status = browser.opener.open(request, timeout=30).status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status == 403, (name, status)
    try:
        status = urllib.request.urlopen(urllib.request.Request(stack.base + "/console/field/sync", data=entry,
                                                               method="POST"), timeout=30).status
    except urllib.error.HTTPError as err:
        status = err.code
    assert status == 401
