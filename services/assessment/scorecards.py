"""Figures from facts: rates, composite score, flags, rankings and explanations (issue #7 §1, §3, §4).

Every figure is computed from `assessment_facts` for a subject and the months of a period, so the
rows behind any figure can be listed (`explain`) and an auditor can count them again.

**Counting rule (issue #17 §4).** Case figures count distinct cases per subject per period:
`received`, `responded_on_time`, `resolved`, `resolved_on_time`, `resolved_on_site`, `handed_off`,
`deadline_lapsed` (a case resolved three times after reopenings is one case resolved). Derived figures make
every numerator a subset of its denominator, so no rate can leave [0, 1]:
- `in_hand` (经办): the cases the subject received or resolved in the period, less those it handed
  off justifiably (attribution.py) and did not resolve. A case received last month and resolved this
  month is in this month's hand.
- `response_base`: the cases received or responded to in time in the period.
- `promised` (承诺): the cases whose resolution deadline came due for the subject in the period: it
  resolved them, or their deadline lapsed in its hands (its township's and county's, for those).
- `kept` (兑现): the promised cases resolved on time and without a lapse in the period (seed 003:
  承诺服务，限时办结). A lapse is a broken promise even when a later holder resolves the case within
  its own fresh deadline: that holder kept theirs, the township and the county did not.
Event figures (ratings, `solved`/`unsolved`, reopenings, lapses, visits) count every event.

| figure | numerator | denominator |
|---|---|---|
| response_rate (响应率) | responded_on_time | response_base |
| resolution_rate (办结率, closed by the handler) | resolved | in_hand |
| on_time_rate (承诺期限兑现率) | kept | promised |
| solution_rate (解决率, solved by the resident's word at the 回访) | solved | solved + unsolved |
| satisfaction_rate (满意率) | satisfied + w · basically_satisfied | satisfied + basically_satisfied + unsatisfied |

`w` is the rules' `basically_satisfied_weight`. A rate with a zero denominator is null and left out of
the composite score, which is the weighted mean of the rates that exist.
"""
from __future__ import annotations

import json

from sqlalchemy import Connection, and_, case, func, or_, select

from services.assessment.periods import DEFAULT_TZ, PERIOD, PeriodError, months_of, period_end  # noqa: F401 (re-exported)
from services.assessment.rules import LEVELS, RATES, default_rules
from services.assessment.tables import counties_table, facts_table, rules_table

CASE_METRICS = ("received", "responded_on_time", "resolved", "resolved_on_time", "resolved_on_site", "handed_off",
                "deadline_lapsed")
DERIVED = {"in_hand": ("received", "resolved", "handed_off"), "response_base": ("received", "responded_on_time"),
           "promised": ("resolved", "deadline_lapsed"), "kept": ("resolved_on_time", "deadline_lapsed")}
EVENT_METRICS = ("satisfied", "basically_satisfied", "unsatisfied", "unreachable", "solved", "unsolved", "reopened",
                 "overdue", "escalated_overdue", "return_overturned", "joint_participation", "visit_days", "households")
COUNTS = CASE_METRICS + tuple(DERIVED) + EVENT_METRICS
RATE_PARTS = {
    "response_rate": (("responded_on_time",), ("response_base",)),
    "resolution_rate": (("resolved",), ("in_hand",)),
    "on_time_rate": (("kept",), ("promised",)),
    "solution_rate": (("solved",), ("solved", "unsolved")),
    "satisfaction_rate": (("satisfied", "basically_satisfied"), ("satisfied", "basically_satisfied", "unsatisfied")),
}
ROLE_LEVEL = {"proxy_agent": "village", "village_cadre": "village", "township_cadre": "township",
              "department_cadre": "county"}
KINDS = ("cadre", "unit", "township", "county")


def rules_for(conn: Connection, county: str, period: str, tz: str) -> tuple[int, dict]:
    """(version, rules) in force at the period's end; version 0 is the seeds' defaults."""
    rows = conn.execute(select(rules_table).where(rules_table.c.county == county)
                        .order_by(rules_table.c.version)).all()
    if not rows:
        return 0, default_rules(county)
    end = period_end(period, tz)
    in_force = [r for r in rows if r.published_at < end] or rows[:1]
    return in_force[-1].version, json.loads(in_force[-1].document)


def county_info(conn: Connection, county: str) -> dict | None:
    row = conn.execute(select(counties_table).where(counties_table.c.county == county)).first()
    return {"timezone": row.timezone, **json.loads(row.policy)} if row else None


def _sums(conn: Connection, county: str, months: list[str], kind: str | None = None,
          subject: str | None = None) -> dict[tuple[str, str], dict[str, float]]:
    """Per (kind, subject): distinct cases per case metric and derived denominator, sums of event metrics."""
    where = [facts_table.c.county == county, facts_table.c.month.in_(months)]
    if kind:
        where.append(facts_table.c.kind == kind)
    if subject:
        where.append(facts_table.c.subject == subject)
    out: dict[tuple[str, str], dict[str, float]] = {}
    events = (select(facts_table.c.kind, facts_table.c.subject, facts_table.c.metric, func.sum(facts_table.c.value))
              .where(*where, facts_table.c.metric.in_(EVENT_METRICS))
              .group_by(facts_table.c.kind, facts_table.c.subject, facts_table.c.metric))
    for k, s, metric, total in conn.execute(events):
        out.setdefault((k, s), {})[metric] = float(total)
    per_case = (select(facts_table.c.kind, facts_table.c.subject, facts_table.c.case_id,
                       *[func.max(case((facts_table.c.metric == m, 1), else_=0)).label(m) for m in CASE_METRICS])
                .where(*where, facts_table.c.metric.in_(CASE_METRICS))
                .group_by(facts_table.c.kind, facts_table.c.subject, facts_table.c.case_id).subquery())
    c = per_case.c
    in_hand = and_(or_(c.received == 1, c.resolved == 1), or_(c.handed_off == 0, c.resolved == 1))
    response_base = or_(c.received == 1, c.responded_on_time == 1)
    promised = or_(c.resolved == 1, c.deadline_lapsed == 1)
    kept = and_(c.resolved_on_time == 1, c.deadline_lapsed == 0)
    cases = (select(c.kind, c.subject, *[func.sum(c[m]) for m in CASE_METRICS],
                    *[func.sum(case((derived, 1), else_=0)) for derived in (in_hand, response_base, promised, kept)])
             .group_by(c.kind, c.subject))
    for k, s, *totals in conn.execute(cases):
        out.setdefault((k, s), {}).update(zip(CASE_METRICS + tuple(DERIVED), (float(t or 0) for t in totals)))
    return out


def _rate(counts: dict, name: str, w: float) -> float | None:
    num, den = RATE_PARTS[name]
    denominator = sum(counts.get(m, 0) for m in den)
    if not denominator:
        return None
    numerator = sum(counts.get(m, 0) * (w if m == "basically_satisfied" else 1) for m in num)
    return round(numerator / denominator, 4)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 4)


def names(info: dict | None) -> dict[tuple[str, str], str]:
    """(kind, code) → the name the published county policy gives it: cards show names, not only codes."""
    info = info or {}
    out = {("unit", u["code"]): u["name"] for u in info.get("units", [])}
    out.update({("township", t["code"]): t["name"] for t in info.get("townships", [])})
    out.update({("cadre", c["id"]): c["name"] for c in info.get("cadres", [])})
    return out


def card(kind: str, subject: str, counts: dict, rules: dict, info: dict | None, months: int,
         recorded: bool = True) -> dict:
    w = rules["basically_satisfied_weight"]
    rates = {name: _rate(counts, name, w) for name in RATES}
    weights = {n: rules["weights"].get(n, 0) for n in RATES if rates[n] is not None and rules["weights"].get(n, 0)}
    composite = round(sum(rates[n] * weights[n] for n in weights) / sum(weights.values()), 4) if weights else None
    named = names(info)
    name = (info or {}).get("name") if kind == "county" else named.get((kind, subject))
    out = {"kind": kind, "subject": subject, "name": name, "counts": {m: _number(counts.get(m, 0)) for m in COUNTS},
           "rates": rates, "composite": composite}
    if kind == "cadre":
        cadre = next((c for c in (info or {}).get("cadres", []) if c["id"] == subject), None)
        level = ROLE_LEVEL.get(cadre["role"]) if cadre else None
        out.update(unit=cadre["unit"] if cadre else None, role=cadre["role"] if cadre else None, level=level,
                   unit_name=named.get(("unit", cadre["unit"])) if cadre else None)
        quota_year = rules["quotas"]["visit_days_per_year"].get(level) if level else None
        out["visits"] = {"days": _number(counts.get("visit_days", 0)),
                         "quota_days_for_period": round(quota_year * months / 12, 1) if quota_year is not None else None,
                         "quota_days_per_year": quota_year,
                         "households": _number(counts.get("households", 0)),
                         "households_target": rules["quotas"]["liaison_households_per_month"] * months}
        out["flags"] = flags(counts, rates["satisfaction_rate"], rules)
        if not recorded:
            out["flags"].append({"flag": "no_recorded_work",
                                 "rule": f"no case, rating or visit recorded in the period: visit days 0 of "
                                         f"{out['visits']['quota_days_for_period']} (pro rata)",
                                 "seed": "000", "source": "干部每年进村入户时间不少于10/30/50天"})
        out["ranked"] = counts.get("received", 0) >= rules["min_cases_to_rank"]
    return out


def flags(counts: dict, satisfaction: float | None, rules: dict) -> list[dict]:
    """Seed 001: 低于80%的实行"一票否决"; seed 004: 低于90%的取消评优资格, 低于70%的予以调整."""
    rated = sum(counts.get(m, 0) for m in ("satisfied", "basically_satisfied", "unsatisfied"))
    if satisfaction is None or rated < rules["min_ratings_to_flag"]:
        return []
    t = rules["thresholds"]
    out = []
    for name, threshold, seed, rule in (
            ("excellence_lost", t["excellence_lost"], "004", "满意度低于90%取消年度考核评优资格"),
            ("promotion_veto", t["promotion_veto"], "001", "满意率低于80%的实行一票否决"),
            ("reassignment_review", t["reassignment_review"], "004", "满意度低于70%的及时进行调整")):
        if satisfaction < threshold:
            out.append({"flag": name, "rule": f"satisfaction_rate {satisfaction:.2%} < {threshold:.0%}",
                        "seed": seed, "source": rule})
    return out


def scorecards(conn: Connection, county: str, period: str, kind: str = "cadre", subject: str | None = None) -> dict:
    info = county_info(conn, county)
    tz = (info or {}).get("timezone", DEFAULT_TZ)
    months = months_of(period)
    version, rules = rules_for(conn, county, period, tz)
    sums = _sums(conn, county, months, kind, subject)
    cards = [card(k, s, counts, rules, info, len(months)) for (k, s), counts in sorted(sums.items())]
    if kind == "cadre":          # the published roster appears whole: a cadre without recorded work, flagged
        idle = sorted(c["id"] for c in (info or {}).get("cadres", [])
                      if ("cadre", c["id"]) not in sums and subject in (None, c["id"]))
        cards = sorted(cards + [card("cadre", c, {}, rules, info, len(months), recorded=False) for c in idle],
                       key=lambda c: c["subject"])
    return {"county": county, "period": period, "rules_version": version, "kind": kind, "cards": cards}


def rankings(conn: Connection, county: str, period: str) -> dict:
    """Cadres with at least `min_cases_to_rank` cases, by composite score, per level; the top N of each."""
    result = scorecards(conn, county, period, "cadre")
    top = rules_for(conn, county, period, (county_info(conn, county) or {}).get("timezone", DEFAULT_TZ))[1]["top"]
    levels = {}
    for level in LEVELS:
        ranked = sorted((c for c in result["cards"] if c["level"] == level and c["ranked"] and c["composite"] is not None),
                        key=lambda c: (-c["composite"], -c["counts"]["resolved"], c["subject"]))
        levels[level] = [{"rank": i + 1, "cadre": c["subject"], "name": c["name"], "unit": c["unit"],
                          "unit_name": c["unit_name"], "composite": c["composite"], "rates": c["rates"],
                          "received": c["counts"]["received"], "handed_off": c["counts"]["handed_off"]}
                         for i, c in enumerate(ranked)]
    return {"county": county, "period": period, "rules_version": result["rules_version"], "levels": levels,
            "top": {level: rows[:top] for level, rows in levels.items()}}


def explain(conn: Connection, county: str, period: str, kind: str, subject: str, figure: str) -> dict:
    """The facts behind one figure: for a rate its numerator and denominator rows, for a count its rows."""
    if figure in RATE_PARTS:
        num, den = RATE_PARTS[figure]
    elif figure in COUNTS:
        num, den = (figure,), ()
    else:
        raise KeyError(figure)
    months = months_of(period)

    def rows(metrics):
        metrics = tuple(dict.fromkeys(part for m in metrics for part in DERIVED.get(m, (m,))))
        if not metrics:
            return []
        query = (select(facts_table).where(facts_table.c.county == county, facts_table.c.kind == kind,
                                           facts_table.c.subject == subject, facts_table.c.month.in_(months),
                                           facts_table.c.metric.in_(metrics))
                 .order_by(facts_table.c.position, facts_table.c.metric))
        return [{"metric": r.metric, "case_id": r.case_id, "position": r.position, "event_type": r.event_type,
                 "month": r.month, "value": _number(r.value)} for r in conn.execute(query)]
    card_ = scorecards(conn, county, period, kind, subject)["cards"]
    value = (card_[0]["rates"].get(figure) if figure in RATE_PARTS else card_[0]["counts"].get(figure)) if card_ else None
    return {"county": county, "period": period, "kind": kind, "subject": subject, "figure": figure, "value": value,
            "counting": COUNTING.get(figure) or "; ".join(COUNTING[m] for m in num + den if m in COUNTING)
            or "each row counts", "numerator": rows(num), "denominator": rows(den)}


COUNTING = {m: f"{m}: distinct cases" for m in CASE_METRICS} | {
    "in_hand": "in_hand: distinct cases received or resolved, less those handed off (handed_off) and not resolved",
    "response_base": "response_base: distinct cases received or responded to in time",
    "promised": "promised: distinct cases resolved or whose resolution deadline lapsed (deadline_lapsed)",
    "kept": "kept: distinct cases resolved on time (resolved_on_time) without a lapse (deadline_lapsed) in the period"}


def dump(conn: Connection, county: str, periods: list[str]) -> list[dict]:
    """Every card of every kind for `periods`: what a replay must reproduce exactly."""
    return [scorecards(conn, county, p, kind) for p in periods for kind in KINDS]
