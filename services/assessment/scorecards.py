"""Figures from facts: rates, composite score, flags, rankings and explanations (issue #7 §1, §3, §4).

Every figure is a sum over `assessment_facts` for a subject and the months of a period, so the rows
behind any figure can be listed (`explain`) and an auditor can add them up again.

| figure | numerator | denominator |
|---|---|---|
| response_rate (响应率) | responded_on_time | received |
| resolution_rate (办结率) | resolved | received |
| on_time_rate (承诺期限兑现率) | resolved_on_time | resolved |
| satisfaction_rate (满意率) | satisfied + w · basically_satisfied | satisfied + basically_satisfied + unsatisfied |

`w` is the rules' `basically_satisfied_weight`. A rate with a zero denominator is null and left out of
the composite score, which is the weighted mean of the rates that exist.
"""
from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select

from minqing.clock import isoformat
from services.assessment.rules import LEVELS, RATES, default_rules
from services.assessment.tables import counties_table, facts_table, rules_table

PERIOD = re.compile(r"^(2\d{3})(?:-(0[1-9]|1[0-2])|-H([12]))?$")      # years 2000-2999
COUNTS = ("received", "responded_on_time", "resolved", "resolved_on_time", "resolved_on_site", "satisfied",
          "basically_satisfied", "unsatisfied", "unreachable", "reopened", "overdue", "escalated_overdue",
          "joint_participation", "visit_days", "households")
RATE_PARTS = {
    "response_rate": (("responded_on_time",), ("received",)),
    "resolution_rate": (("resolved",), ("received",)),
    "on_time_rate": (("resolved_on_time",), ("resolved",)),
    "satisfaction_rate": (("satisfied", "basically_satisfied"), ("satisfied", "basically_satisfied", "unsatisfied")),
}
ROLE_LEVEL = {"proxy_agent": "village", "village_cadre": "village", "township_cadre": "township",
              "department_cadre": "county"}
KINDS = ("cadre", "unit", "township", "county")


class PeriodError(ValueError):
    pass


def months_of(period: str) -> list[str]:
    """`2026-03` → [2026-03]; `2026-H1` → January to June; `2026` → the twelve months."""
    m = PERIOD.match(period or "")
    if not m:
        raise PeriodError("must be a month (2026-03), a half-year (2026-H1, 2026-H2) or a year (2026), "
                          "years 2000-2999")
    year, month, half = m.groups()
    if month:
        return [f"{year}-{month}"]
    months = range(1, 7) if half == "1" else range(7, 13) if half == "2" else range(1, 13)
    return [f"{year}-{n:02d}" for n in months]


def period_end(period: str, tz: str) -> str:
    """The instant a period ends (local midnight after its last day), for choosing its rules."""
    last = months_of(period)[-1]
    year, month = int(last[:4]), int(last[5:])
    following = date(year + (month == 12), month % 12 + 1, 1)
    return isoformat(datetime.combine(following, time(0), tzinfo=ZoneInfo(tz)))


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
    query = (select(facts_table.c.kind, facts_table.c.subject, facts_table.c.metric, func.sum(facts_table.c.value))
             .where(facts_table.c.county == county, facts_table.c.month.in_(months))
             .group_by(facts_table.c.kind, facts_table.c.subject, facts_table.c.metric))
    if kind:
        query = query.where(facts_table.c.kind == kind)
    if subject:
        query = query.where(facts_table.c.subject == subject)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for k, s, metric, total in conn.execute(query):
        out.setdefault((k, s), {})[metric] = float(total)
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


def card(kind: str, subject: str, counts: dict, rules: dict, info: dict | None, months: int) -> dict:
    w = rules["basically_satisfied_weight"]
    rates = {name: _rate(counts, name, w) for name in RATES}
    weights = {n: rules["weights"].get(n, 0) for n in RATES if rates[n] is not None and rules["weights"].get(n, 0)}
    composite = round(sum(rates[n] * weights[n] for n in weights) / sum(weights.values()), 4) if weights else None
    out = {"kind": kind, "subject": subject, "counts": {m: _number(counts.get(m, 0)) for m in COUNTS},
           "rates": rates, "composite": composite}
    if kind == "cadre":
        cadre = next((c for c in (info or {}).get("cadres", []) if c["id"] == subject), None)
        level = ROLE_LEVEL.get(cadre["role"]) if cadre else None
        out.update(unit=cadre["unit"] if cadre else None, role=cadre["role"] if cadre else None, level=level)
        quota_year = rules["quotas"]["visit_days_per_year"].get(level) if level else None
        out["visits"] = {"days": _number(counts.get("visit_days", 0)),
                         "quota_days_for_period": round(quota_year * months / 12, 1) if quota_year is not None else None,
                         "quota_days_per_year": quota_year,
                         "households": _number(counts.get("households", 0)),
                         "households_target": rules["quotas"]["liaison_households_per_month"] * months}
        out["flags"] = flags(counts, rates["satisfaction_rate"], rules)
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
    tz = (info or {}).get("timezone", "Asia/Shanghai")
    months = months_of(period)
    version, rules = rules_for(conn, county, period, tz)
    sums = _sums(conn, county, months, kind, subject)
    cards = [card(k, s, counts, rules, info, len(months)) for (k, s), counts in sorted(sums.items())]
    return {"county": county, "period": period, "rules_version": version, "kind": kind, "cards": cards}


def rankings(conn: Connection, county: str, period: str) -> dict:
    """Cadres with at least `min_cases_to_rank` cases, by composite score, per level; the top N of each."""
    result = scorecards(conn, county, period, "cadre")
    top = rules_for(conn, county, period, (county_info(conn, county) or {}).get("timezone", "Asia/Shanghai"))[1]["top"]
    levels = {}
    for level in LEVELS:
        ranked = sorted((c for c in result["cards"] if c["level"] == level and c["ranked"] and c["composite"] is not None),
                        key=lambda c: (-c["composite"], -c["counts"]["resolved"], c["subject"]))
        levels[level] = [{"rank": i + 1, "cadre": c["subject"], "unit": c["unit"], "composite": c["composite"],
                          "rates": c["rates"], "received": c["counts"]["received"]} for i, c in enumerate(ranked)]
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
            "numerator": rows(num), "denominator": rows(den)}


def dump(conn: Connection, county: str, periods: list[str]) -> list[dict]:
    """Every card of every kind for `periods`: what a replay must reproduce exactly."""
    return [scorecards(conn, county, p, kind) for p in periods for kind in KINDS]
