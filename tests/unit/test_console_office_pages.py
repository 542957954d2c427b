"""The assessment office's and the auditor's console pages (issue #14 §5, §6) on a fake API: the page
lays out what the API answers (names, not codes; figures linked to their cases), charts are SVG with
the names, the CSV is the same cards and safe in a spreadsheet, a bad period is a form error naming
the field, and the auditor's verification and published-head check run on a real SQLite ledger."""
from __future__ import annotations

import csv
import io
import re

import pytest
from werkzeug.test import Client

from minqing import access
from minqing.clock import ManualClock
from minqing.db import make_engine
from minqing.ledger import Ledger, Metadata, NewEvent, create_schema, metadata_obj as ledger_md
from services.console import accounts, sessions, web
from services.console.api import Answer
from services.console.app import Console
from services.console.assessment_pages import csv_safe

P = "/api/v1/assessment/longjiang"
RATES = {"response_rate": 1.0, "resolution_rate": 0.5, "on_time_rate": 1.0, "solution_rate": None,
         "satisfaction_rate": 0.75}
COUNTS = {"received": 2, "in_hand": 2, "resolved": 1}


def _card(kind, subject, name, **extra):
    return {"kind": kind, "subject": subject, "name": name, "counts": COUNTS, "rates": RATES, "composite": 0.81,
            **extra}


CADRES = {"county": "longjiang", "period": "2026-01", "rules_version": 1, "kind": "cadre", "as_of_position": 42,
          "cards": [_card("cadre", "lj-c002", "张<b>三", unit="u1", unit_name="靠山村代理代办服务站", level="village",
                          flags=[{"flag": "promotion_veto", "rule": "satisfaction_rate 75.00% < 80%", "seed": "001",
                                  "source": "满意率低于80%的实行一票否决"}]),
                    _card("cadre", "lj-c006", "=HYPERLINK(1)", unit="u2", unit_name="黑岗乡便民服务中心",
                          level="township", flags=[])]}
SUMMARY = {**CADRES, "kind": "county", "cards": [_card("county", "longjiang", "龙江县")]}
TOWNSHIPS = {**CADRES, "kind": "township", "cards": [_card("township", "heigang", "黑岗乡")]}
RANKINGS = {"county": "longjiang", "period": "2026-01", "rules_version": 1,
            "levels": {"village": [{"rank": 1, "cadre": "lj-c002", "name": "张<b>三", "unit": "u1",
                                    "unit_name": "靠山村代理代办服务站", "composite": 0.81, "rates": RATES,
                                    "received": 2, "handed_off": 0}], "township": [], "county": []}}
RANKINGS["top"] = RANKINGS["levels"]
EXPLAIN = {"county": "longjiang", "period": "2026-01", "kind": "township", "subject": "heigang",
           "figure": "satisfaction_rate", "value": 0.75, "counting": "each row counts",
           "numerator": [{"metric": "satisfied", "case_id": "c-1", "position": 9, "event_type": "case.followed_up",
                          "month": "2026-01", "value": 1}],
           "denominator": [{"metric": "satisfied", "case_id": "c-1", "position": 9, "event_type": "case.followed_up",
                            "month": "2026-01", "value": 1},
                           {"metric": "unsatisfied", "case_id": "c-2", "position": 12,
                            "event_type": "case.followed_up", "month": "2026-01", "value": 1}]}


class FakeApi:
    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def call(self, method, path, **kwargs):
        self.calls.append((method, path, kwargs))
        answer = self.answers.get((method, path), Answer(404, {"error": {"code": "not_found"}}))
        return answer(kwargs) if callable(answer) else answer


def _period_checked(body):
    def answer(kwargs):
        if (kwargs.get("query") or {}).get("period") == "2026-13":
            return Answer(422, {"error": {"code": "invalid_fields", "fields": {"period": ["must be a month"]}}})
        return Answer(200, body)
    return answer


API = {("GET", f"{P}/cadres"): _period_checked(CADRES), ("GET", f"{P}/summary"): Answer(200, SUMMARY),
       ("GET", f"{P}/townships"): Answer(200, TOWNSHIPS), ("GET", f"{P}/rankings"): Answer(200, RANKINGS),
       ("GET", f"{P}/explain"): Answer(200, EXPLAIN),
       ("GET", "/api/v1/access-log"): Answer(200, {"county": "longjiang", "reads": [
           {"at": "2026-01-05T02:00:00.000000Z", "case_id": "c-1", "token_id": "t1", "role": "cadre",
            "actor": "cadre:lj-c002", "action": "case.read"}]})}


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'console.db'}")
    for md in (access.metadata_obj, accounts.metadata_obj, sessions.metadata_obj, ledger_md):
        md.create_all(engine)
    yield engine
    engine.dispose()


def _client(engine, role, api, **who):
    clock = ManualClock()
    account = accounts.add(engine, f"u-{role}", "first-password", role, "longjiang", clock=clock, **who)
    accounts.change_password(engine, account.account_id, "first-password", "second-password")
    account = accounts.login(engine, f"u-{role}", "second-password", clock)
    client = Client(Console(engine, api, clock))
    client.set_cookie(web.SESSION_COOKIE, sessions.open_session(engine, account, clock))
    return client


def test_scorecards_show_names_link_every_figure_to_its_cases_and_chart_by_name(engine):
    api = FakeApi(API)
    page = _client(engine, "supervisor", api).get("/console/assessment?kind=cadre&period=2026-01")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "张&lt;b&gt;三" in html and "<b>三" not in html
    assert "靠山村代理代办服务站" in html and "龙江县" in html and "75.0%" in html
    assert ('href="/console/assessment/explain?kind=cadre&amp;subject=lj-c002&amp;figure=satisfaction_rate'
            '&amp;period=2026-01"') in html
    assert '<svg class="chart" role="img"' in html and re.search(r'<text class="chart-label" x="0" y="\d+">张&lt;b&gt;三</text>', html)
    assert "一票否决" in html
    assert "<script>" not in html.replace('<script src="/static/console.js" defer></script>', "")
    assert api.calls[0][2]["query"] == {"period": "2026-01"}           # the API's period, not the console's


def test_a_bad_period_is_a_form_error_naming_the_field(engine):
    page = _client(engine, "auditor", FakeApi(API)).get("/console/assessment?period=2026-13")
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and '<a href="#f-period">考核期间</a>' in html and "2026-H1" in html
    assert 'id="f-period"' in html


def test_rankings_show_the_top_ten_and_the_flagged_cadres_with_their_rule(engine):
    html = _client(engine, "auditor", FakeApi(API)).get("/console/assessment/rankings?period=2026-01").get_data(
        as_text=True)
    assert "村级干部排名" in html and "满意率低于80%的实行一票否决" in html and "satisfaction_rate 75.00% &lt; 80%" in html
    assert "依据种子文件 001" in html and 'class="top"' in html


def test_drill_down_lists_each_case_once_with_its_numerator_and_denominator_rows(engine):
    html = _client(engine, "supervisor", FakeApi(API)).get(
        "/console/assessment/explain?kind=township&subject=heigang&figure=satisfaction_rate&period=2026-01"
    ).get_data(as_text=True)
    assert "黑岗乡 · 满意率 · 2026-01" in html and 'id="figure-value">75.0%' in html
    assert html.count('href="/console/cases/c-1"') == 1 and 'href="/console/cases/c-2"' in html
    assert "所依据的诉求（2 件）" in html


def test_the_csv_is_the_cards_and_cannot_run_in_a_spreadsheet(engine):
    answer = _client(engine, "supervisor", FakeApi(API)).get("/console/assessment.csv?kind=cadre&period=2026-01")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert 'filename="assessment-longjiang-cadre-2026-01.csv"' in answer.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:5] == ["period", "rules_version", "kind", "subject", "name"]
    assert rows[1][4] == "张<b>三" and rows[2][4] == "'=HYPERLINK(1)" and "promotion_veto" in rows[1][-1]
    assert csv_safe(-0.5) == "-0.5" and csv_safe("-1+1") == "'-1+1" and csv_safe(None) == ""


def test_office_pages_are_for_assessment_roles_and_the_ledger_for_auditors(engine):
    operator = _client(engine, "operator", FakeApi(API))
    for path in ("/console/assessment", "/console/assessment/rankings", "/console/assessment.csv", "/console/audit",
                 "/console/audit/access"):
        assert operator.get(path).status_code == 403, path
    supervisor = _client(engine, "supervisor", FakeApi(API))
    assert supervisor.get("/console/audit").status_code == 403
    assert supervisor.get("/console/audit/access").status_code == 403


def test_the_auditor_verifies_the_ledger_and_checks_a_published_head(engine):
    create_schema(engine)
    ledger = Ledger(engine)
    recorded = ledger.append("cadre-lj-c002", [NewEvent(
        "visit.logged", {"cadre": "lj-c002", "county": "longjiang", "day": "2026-01-05", "hamlet": "heigang.kaoshan",
                         "households": 3}, Metadata(actor="cadre:lj-c002", county="longjiang"))])[0]
    position, head_hash = ledger.head()
    client = _client(engine, "auditor", FakeApi(API))
    page = client.get("/console/audit").get_data(as_text=True)
    assert f'id="head-position">{position}<' in page and head_hash in page and "尚未核验" in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    done = client.post("/console/audit", data={"csrf": csrf, "what": "verify"}, follow_redirects=True)
    assert done.status_code == 200 and "核验通过：共 1 条事件" in done.get_data(as_text=True)
    wrong = client.post("/console/audit", data={"csrf": csrf, "what": "expect", "expect_head": "12:xyz"})
    assert wrong.status_code == 422 and '<a href="#f-expect_head">已公布的链头</a>' in wrong.get_data(as_text=True)
    same = client.post("/console/audit", data={"csrf": csrf, "what": "expect",
                                               "expect_head": f"{recorded.position}:{head_hash}"})
    assert "的哈希与已公布的一致" in same.get_data(as_text=True)
    other = client.post("/console/audit", data={"csrf": csrf, "what": "expect",
                                                "expect_head": f"{recorded.position}:{'b' * 64}"})
    assert "公布之后账本被改写过" in other.get_data(as_text=True)
    missing = client.post("/console/audit", data={"csrf": csrf, "what": "expect", "expect_head": "99:" + "a" * 64})
    assert "账本中没有位置 99" in missing.get_data(as_text=True)
    assert client.post("/console/audit", data={"what": "verify"}).status_code == 403      # no CSRF token


def test_the_access_log_names_the_reader(engine):
    html = _client(engine, "auditor", FakeApi(API)).get("/console/audit/access?case_id=c-1").get_data(as_text=True)
    assert "张&lt;b&gt;三" in html and 'href="/console/cases/c-1"' in html and "干部" in html


def test_the_chart_draws_the_figure_asked_for_and_leaves_out_subjects_without_it(engine):
    client = _client(engine, "supervisor", FakeApi(API))
    html = client.get("/console/assessment?period=2026-01").get_data(as_text=True)
    assert "各干部办结率" in html and "figure=resolution_rate&amp;period=2026-01" in html     # the default
    html = client.get("/console/assessment?period=2026-01&chart=solution_rate").get_data(as_text=True)
    assert '<svg class="chart"' not in html                                  # no cadre has a solution rate
    html = client.get("/console/assessment?period=2026-01&chart=satisfaction_rate").get_data(as_text=True)
    assert "各干部满意率" in html and html.count('<text class="chart-label"') == 2


def test_an_auditor_reads_the_case_timeline_with_every_read_merged_in(engine):
    case = {"case_id": "c-1", "tracking_no": "LJ-20260105-0001", "county": "longjiang", "status": "accepted",
            "channel": "hotline", "category": "202", "summary": "路灯", "location": {},
            "assignment": {"unit": "u1", "cadre": "lj-c002", "resolution_due": "2026-01-12T09:00:00Z"},
            "history": [{"position": 1, "version": 1, "type": "case.reported", "at": "2026-01-05T09:00:00+08:00"},
                        {"position": 3, "version": 2, "type": "case.accepted", "at": "2026-01-05T10:30:00+08:00"}]}
    api = FakeApi({**API, ("GET", "/api/v1/cases/c-1"): Answer(200, case),
                   ("GET", "/api/v1/cases/c-1/routing"): Answer(200, {"decisions": [], "current": None})})
    html = _client(engine, "auditor", api).get("/console/cases/c-1").get_data(as_text=True)
    steps = re.findall(r"<li(?: class=\"read\")?><time>([^<]+)</time> ([^<]*<strong>[^<]+|[^<]+)", html)
    assert [s[0] for s in steps] == ["2026-01-05 09:00:00", "2026-01-05 10:00:00", "2026-01-05 10:30:00"], steps
    assert "张&lt;b&gt;三（干部）查阅了详情" in html and "lj-c002" in html
    cadre = _client(engine, "cadre", api, unit="u1", cadre="lj-c002").get("/console/cases/c-1").get_data(as_text=True)
    assert "查阅了详情" not in cadre and ("GET", "/api/v1/access-log") not in [c[:2] for c in api.calls[-3:]]


def test_the_dispatch_meeting_agenda_lists_the_open_cases_at_the_meetings_tier(engine):
    """Seed 004: 区"一线办"每月25日通过召开调度会…予以统筹解决 — the day comes from routing's worklist."""
    catalogue = {"county": "luyang", "name": "庐阳区", "categories": [],
                 "townships": [{"code": "xinglin", "name": "杏林街道", "villages": []}],
                 "units": [{"code": "yxb", "name": "区一线办", "tier": "dispatch"}]}
    rows = [{"case_id": "c-9", "tracking_no": "LY-20261201-0009", "summary": "老旧小区改造<b>", "status": "assigned",
             "tier": "dispatch", "township": "xinglin", "unit": "yxb", "overdue": False, "pressure": None,
             "response_due": None, "resolution_due": "2026-12-30T00:00:00+08:00"},
            {"case_id": "c-8", "tracking_no": "LY-20261201-0008", "summary": "路灯", "status": "accepted",
             "tier": "community", "township": "xinglin", "unit": "u", "overdue": False, "pressure": None,
             "response_due": None, "resolution_due": "2026-12-05T00:00:00+08:00"}]
    meetings = [{"tier": "dispatch", "name": "区一线办统筹办结（每月25日调度会）", "day_of_month": 25, "next": "2026-12-25"}]
    api = FakeApi({("GET", "/api/v1/worklist"): Answer(200, {"total": 2, "cases": rows, "dispatch_meetings": meetings}),
                   ("GET", "/api/v1/counties/longjiang"): Answer(200, catalogue)})
    html = _client(engine, "supervisor", api).get("/console/agenda").get_data(as_text=True)
    assert "庐阳区区一线办统筹办结（每月25日调度会） · 2026-12-25" in html and "共 1 件待议" in html
    assert "LY-20261201-0009" in html and "LY-20261201-0008" not in html and "老旧小区改造&lt;b&gt;" in html
    assert "杏林街道" in html and "区一线办" in html
    api.answers[("GET", "/api/v1/worklist")] = Answer(200, {"total": 0, "cases": [], "dispatch_meetings": []})
    api.answers[("GET", "/api/v1/counties/longjiang")] = Answer(200, {**catalogue, "name": "龙江县"})
    client = Client(Console(engine, api, ManualClock()))
    client.set_cookie(web.SESSION_COOKIE, sessions.open_session(engine, accounts.login(
        engine, "u-supervisor", "second-password", ManualClock()), ManualClock()))
    assert "龙江县没有月度调度会" in client.get("/console/agenda").get_data(as_text=True)
