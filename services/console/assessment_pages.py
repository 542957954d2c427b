"""The assessment office's pages (issue #14 §5): scorecards per cadre, unit and township for a month,
half-year or year; rankings and the top ten; flagged cadres with the rule that flagged them; charts;
CSV; and from any figure a drill-down to the cases behind it.

Every figure is the assessment service's (`/api/v1/assessment/…`), read with the person's token: the
console computes nothing, it only lays out, charts and links what the API answers — so a page, its
CSV and the API can never disagree, and a cadre sees here exactly what the API lets a cadre see (only
their own card and their own explanations)."""
from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

from werkzeug.wrappers import Response

from services.console import web
from services.console.charts import Bar, bars
from services.console.messages import text

KINDS = ("cadre", "unit", "township")
RATES = ("response_rate", "resolution_rate", "on_time_rate", "solution_rate", "satisfaction_rate")
SHOWN_COUNTS = ("received", "in_hand", "resolved")
FIGURES = SHOWN_COUNTS + RATES
LEVELS = ("village", "township", "county")
# The chart's figure unless the page asks for another: the resolution rate has a value as soon as cases
# are handled, where satisfaction waits for the follow-up calls; subjects without the figure are left
# out of the chart (listed in the table with "—"), the best first, at most CHART_BARS.
CHART_DEFAULT, CHART_BARS = "resolution_rate", 15
# The explain route's figures (services/assessment/scorecards.py COUNTS and RATE_PARTS); anything else is 404 here.
EXPLAINABLE = FIGURES + ("responded_on_time", "response_base", "resolved_on_time", "resolved_on_site", "handed_off",
                         "satisfied", "basically_satisfied", "unsatisfied", "unreachable", "solved", "unsolved",
                         "reopened", "overdue", "escalated_overdue", "return_overturned", "joint_participation",
                         "visit_days", "households")


def pct(value) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def score(value) -> str:
    """The composite score (a weighted mean of shares) as points out of 100."""
    return "—" if value is None else f"{value * 100:.1f}"


def explain_href(kind: str, subject: str, figure: str, period: str) -> str:
    return "/console/assessment/explain?" + urlencode({"kind": kind, "subject": subject, "figure": figure,
                                                        "period": period})


def csv_safe(value) -> str:
    """A cell a spreadsheet will not run: text starting =, +, -, @ (or a tab/CR) gets a leading quote."""
    out = "" if value is None else str(value)
    return "'" + out if out[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(out) else out


def _number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


class AssessmentPages:
    """Mixed into services.console.app.Console (uses its _require, api, _client and _error)."""

    def _period_answer(self, request, session, path: str, **query):
        """The API's answer for the page's period, or (None, the period form error named in words)."""
        period = (request.args.get("period") or "").strip()
        if period:
            query["period"] = period
        answer = self.api.call("GET", path, token=session.token, query=query or None, client=self._client(request))
        if answer.status == 422 and "period" in (answer.error.get("fields") or {}):
            return None, {"period": "assessment.period_invalid"}
        return answer, {}

    def _assessment_page(self, request, template: str, status: int = 200, **context):
        session = context["session"]
        return web.render(request, template, status=status, pct=pct, score=score, explain_href=explain_href,
                          county=session.account.county, period_arg=(request.args.get("period") or "").strip(),
                          **context)

    def page_assessment(self, request):
        session, answer = self._require(request, "assessment.read")
        if answer is not None:
            return answer
        kind = request.args.get("kind") if request.args.get("kind") in KINDS else "cadre"
        county, lang = session.account.county, web.language(request)
        listed, errors = self._period_answer(request, session, f"/api/v1/assessment/{county}/{kind}s")
        if errors:
            return self._assessment_page(request, "assessment.html", status=422, session=session, kind=kind,
                                         errors=errors, cards=[], summary=None, chart=None, period=None)
        if not listed.ok:
            return self._error(request, listed.status if listed.status in (403, 404) else 503)
        period = listed.body["period"]
        summary = self.api.call("GET", f"/api/v1/assessment/{county}/summary", token=session.token,
                                query={"period": period}, client=self._client(request))
        cards = sorted(listed.body["cards"], key=lambda c: (c["composite"] is None, -(c["composite"] or 0),
                                                            c["name"] or c["subject"]))
        figure = request.args.get("chart") if request.args.get("chart") in RATES else CHART_DEFAULT
        charted = sorted((c for c in cards if c["rates"][figure] is not None), key=lambda c: -c["rates"][figure])
        chart = bars(text(lang, "assessment.chart", kind=text(lang, f"assessment.kind.{kind}"),
                          figure=text(lang, f"figure.{figure}")),
                     [Bar(c["name"] or c["subject"], c["rates"][figure], explain_href(kind, c["subject"], figure, period),
                          pct(c["rates"][figure])) for c in charted[:CHART_BARS]]) if charted else None
        return self._assessment_page(request, "assessment.html", session=session, kind=kind, cards=cards,
                                     period=period, rules_version=listed.body["rules_version"], chart=chart,
                                     chart_figure=figure, rates=RATES,
                                     summary=(summary.body["cards"] or [None])[0] if summary.ok else None,
                                     as_of=listed.body.get("as_of_position"))

    def page_assessment_csv(self, request):
        """The same cards as the page, one row each: counts, rates (as shares), composite and flags."""
        session, answer = self._require(request, "assessment.read")
        if answer is not None:
            return answer
        kind = request.args.get("kind") if request.args.get("kind") in KINDS else "cadre"
        county, lang = session.account.county, web.language(request)
        listed, errors = self._period_answer(request, session, f"/api/v1/assessment/{county}/{kind}s")
        if errors:
            return self.page_assessment(request)
        if not listed.ok:
            return self._error(request, listed.status if listed.status in (403, 404) else 503)
        cards, out = listed.body["cards"], io.StringIO()
        counts = list(cards[0]["counts"]) if cards else list(SHOWN_COUNTS)
        writer = csv.writer(out)
        writer.writerow(["period", "rules_version", "kind", "subject", "name", "unit", *counts, *RATES, "composite",
                         "flags"])
        for c in cards:
            writer.writerow([csv_safe(v) for v in (
                listed.body["period"], listed.body["rules_version"], kind, c["subject"], c["name"],
                c.get("unit_name") or c.get("unit") or "", *[c["counts"].get(m) for m in counts],
                *[c["rates"].get(r) for r in RATES], c["composite"],
                " ".join(f["flag"] for f in c.get("flags", [])))])
        response = Response("\ufeff" + out.getvalue(), mimetype="text/csv")     # the BOM: Excel reads UTF-8
        response.headers["Content-Disposition"] = (f'attachment; filename="assessment-{county}-{kind}-'
                                                   f'{listed.body["period"]}.csv"')
        response.headers["Cache-Control"] = "no-store"
        return response

    def page_rankings(self, request):
        session, answer = self._require(request, "assessment.read")
        if answer is not None:
            return answer
        county, lang = session.account.county, web.language(request)
        ranked, errors = self._period_answer(request, session, f"/api/v1/assessment/{county}/rankings")
        if errors:
            return self._assessment_page(request, "rankings.html", status=422, session=session, errors=errors,
                                         ranked=None, flagged=[], idle=[], charts={}, period=None, levels=LEVELS)
        if not ranked.ok:
            return self._error(request, ranked.status if ranked.status in (403, 404) else 503)
        period = ranked.body["period"]
        cadres = self.api.call("GET", f"/api/v1/assessment/{county}/cadres", token=session.token,
                               query={"period": period}, client=self._client(request))
        cards = cadres.body.get("cards", []) if cadres.ok else []
        idle = [c for c in cards if [f["flag"] for f in c.get("flags", [])] == ["no_recorded_work"]]
        flagged = [c for c in cards if c.get("flags") and c not in idle]
        charts = {level: bars(text(lang, "rankings.chart", level=text(lang, f"rank_level.{level}")),
                              [Bar(r["name"] or r["cadre"], r["composite"],
                                   explain_href("cadre", r["cadre"], "satisfaction_rate", period), score(r["composite"]))
                               for r in rows])
                  for level, rows in ranked.body["top"].items() if rows}
        return self._assessment_page(request, "rankings.html", session=session, ranked=ranked.body, period=period,
                                     flagged=flagged, idle=idle, charts=charts, levels=LEVELS)

    def page_explain(self, request):
        session, answer = self._require(request, "assessment.read")
        if answer is not None:
            return answer
        args = request.args
        if args.get("kind") not in KINDS + ("county",) or args.get("figure") not in EXPLAINABLE \
                or not args.get("subject"):
            return self._error(request, 404)
        county = session.account.county
        found, errors = self._period_answer(request, session, f"/api/v1/assessment/{county}/explain",
                                            kind=args["kind"], subject=args["subject"], figure=args["figure"])
        if errors:
            return self._error(request, 404)
        if not found.ok:
            return self._error(request, found.status if found.status in (403, 404) else 503)
        body = found.body
        cases = {}               # each case once, with the rows that count it
        for side in ("numerator", "denominator"):
            for row in body[side]:
                if row.get("case_id"):
                    entry = cases.setdefault(row["case_id"], {"case_id": row["case_id"], "numerator": [],
                                                              "denominator": []})
                    entry[side].append(row)
        return self._assessment_page(request, "explain.html", session=session, found=body, period=body["period"],
                                     cases=list(cases.values()), rate=args["figure"] in RATES,
                                     name=self._subject_name(session, request, body))

    def _subject_name(self, session, request, body) -> str:
        """The subject's name as the cards give it (the explain route answers codes only)."""
        kind, county = body["kind"], session.account.county
        path = (f"/api/v1/assessment/{county}/summary" if kind == "county"
                else f"/api/v1/assessment/{county}/{kind}s")
        listed = self.api.call("GET", path, token=session.token, query={"period": body["period"]},
                               client=self._client(request))
        card = next((c for c in (listed.body.get("cards", []) if listed.ok else []) if c["subject"] == body["subject"]),
                    None)
        return (card or {}).get("name") or body["subject"]
