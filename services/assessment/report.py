"""`minqing report --county C --period P`: the period's figures as an HTML page with charts and CSV
files, and (with --publish) `assessment.published` carrying the figures' digest (issue #7 §6).

The digest is the SHA-256 of the canonical JSON of `figures` (everything the report shows), so an
auditor who replays the ledger and computes the figures again can check them against the event.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import uuid
from pathlib import Path
from typing import Callable

from jinja2 import Environment, select_autoescape
from markupsafe import Markup
from sqlalchemy import Connection

from minqing.ledger import Ledger, Metadata, NewEvent, canonical_json
from services.assessment import scorecards as sc

_NS = uuid.UUID("5b0e6a2d-7c41-4f8e-a3d9-2c6b1e0f4a77")
RATE_LABELS = {"response_rate": "响应率", "resolution_rate": "办结率", "on_time_rate": "承诺期限兑现率",
               "solution_rate": "解决率", "satisfaction_rate": "满意率"}


def trend_months(period: str) -> list[str]:
    """The months a trend shows: the period's own, or for one month the six months up to it."""
    months = sc.months_of(period)
    if len(months) > 1:
        return months
    year, month = int(period[:4]), int(period[5:])
    out = []
    for back in range(5, -1, -1):
        m = month - back
        y = year + (m - 1) // 12
        out.append(f"{y}-{(m - 1) % 12 + 1:02d}")
    return out


def figures(conn: Connection, county: str, period: str) -> dict:
    cards = {kind: sc.scorecards(conn, county, period, kind) for kind in sc.KINDS}
    info = sc.county_info(conn, county) or {}
    names = {u["code"]: u["name"] for u in info.get("units", [])}
    names.update({t["code"]: t["name"] for t in info.get("townships", [])})
    names.update({c["id"]: c["name"] for c in info.get("cadres", [])})
    trend = []
    for month in trend_months(period):
        county_cards = sc.scorecards(conn, county, month, "county")["cards"]
        trend.append({"month": month, **(county_cards[0]["rates"] if county_cards else {r: None for r in RATE_LABELS}),
                      "received": county_cards[0]["counts"]["received"] if county_cards else 0})
    flagged = [{"cadre": c["subject"], "name": names.get(c["subject"]), "unit": c["unit"], **f}
               for c in cards["cadre"]["cards"] for f in c["flags"]]
    return {"county": county, "county_name": info.get("name", county), "period": period,
            "rules_version": cards["cadre"]["rules_version"], "names": names,
            "county_card": (cards["county"]["cards"] or [None])[0], "townships": cards["township"]["cards"],
            "units": cards["unit"]["cards"], "cadres": cards["cadre"]["cards"],
            "rankings": sc.rankings(conn, county, period), "trend": trend, "flagged": flagged}


def digest(data: dict) -> str:
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def _pct(value) -> str:
    return "—" if value is None else f"{value:.1%}"


def quiet_chart_libraries() -> None:
    """matplotlib and fontTools log INFO lines (font cache, subsetting) meant for their developers;
    an operator running `minqing report` sees only warnings from them (issue #18.8b)."""
    for name in ("matplotlib", "fontTools", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _charts(data: dict, out: Path) -> list[str]:
    quiet_chart_libraries()
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    files = []
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    months = [row["month"] for row in data["trend"]]
    for rate, style in zip(RATE_LABELS, ("o-", "s-", "^-", "v-", "D-")):
        values = [row.get(rate) for row in data["trend"]]
        ax.plot(months, [v * 100 if v is not None else float("nan") for v in values], style, label=rate)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.set_title(f"{data['county']}: rates month by month")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out / "trend.png")
    plt.close(fig)
    files.append("trend.png")

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    codes = [c["subject"] for c in data["townships"]]
    width = 0.27
    for i, rate in enumerate(("resolution_rate", "solution_rate", "satisfaction_rate")):
        values = [(c["rates"][rate] or 0) * 100 for c in data["townships"]]
        ax.bar([x + (i - 1) * width for x in range(len(codes))], values, width, label=rate)
    ax.set_xticks(range(len(codes)), codes, rotation=20, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.set_title(f"{data['county']} {data['period']}: townships")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "townships.png")
    plt.close(fig)
    files.append("townships.png")
    return files


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8-sig") as handle:       # BOM: opens right in Excel
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _card_rows(cards: list[dict], names: dict) -> list[list]:
    return [[c["subject"], c.get("name") or names.get(c["subject"], ""), c["counts"]["received"],
             c["counts"]["handed_off"], c["counts"]["in_hand"], c["counts"]["resolved"],
             *[c["rates"][r] for r in RATE_LABELS], c["composite"]] for c in cards]


CARD_HEADER = ["code", "name", "received", "handed_off", "in_hand", "resolved", *RATE_LABELS, "composite"]

# Each chart notes whether the browser decoded it (data-rendered="800x400", or "failed"), so a
# reader, and tests/interface/test_assessment_report.py, can tell a chart that did not render.
PROBE = Markup('onload="this.dataset.rendered=this.naturalWidth+\'x\'+this.naturalHeight" '
               'onerror="this.dataset.rendered=\'failed\'"')

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{{ d.county_name }} {{ d.period }} 考核报告</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child,td.l{text-align:left}
.flag{color:#a00}</style></head><body>
<h1>{{ d.county_name }} 群众工作考核 {{ d.period }}</h1>
<p>Rules version {{ d.rules_version }} · figures digest <code>{{ digest }}</code> · every figure can be traced to
its cases with <code>GET /api/v1/assessment/{{ d.county }}/explain</code>.</p>
{% if d.county_card %}<h2>全县 County</h2><table><tr><th>received</th><th>resolved</th>{% for r in labels %}<th>{{ labels[r] }}</th>{% endfor %}</tr>
<tr><td>{{ d.county_card.counts.received }}</td><td>{{ d.county_card.counts.resolved }}</td>
{% for r in labels %}<td>{{ pct(d.county_card.rates[r]) }}</td>{% endfor %}</tr></table>{% endif %}
<h2>月度趋势 Trend</h2><img id="trend" src="trend.png" alt="rates month by month" {{ probe }}>
<h2>乡镇 Townships</h2><img id="townships" src="townships.png" alt="townships" {{ probe }}>
{{ table(d.townships) }}
<h2>单位 Units</h2>{{ table(d.units) }}
<h2>干部 Cadres</h2>{{ table(d.cadres) }}
<h2>排名 Rankings: the top of each level (十佳)</h2>
{% for level, rows in d.rankings.top.items() %}<h3>{{ level }}</h3>
{% if rows %}<table><tr><th>rank</th><th>cadre</th><th>unit</th><th>composite</th>{% for k in labels %}<th>{{ labels[k] }}</th>{% endfor %}<th>received</th><th>handed off</th></tr>
{% for r in rows %}<tr><td>{{ r.rank }}</td><td class="l">{{ r.name or '' }} {{ r.cadre }}</td><td class="l">{{ r.unit_name or '' }} {{ r.unit }}</td>
<td>{{ pct(r.composite) }}</td>{% for k in labels %}<td>{{ pct(r.rates[k]) }}</td>{% endfor %}<td>{{ r.received }}</td><td>{{ r.handed_off }}</td></tr>{% endfor %}</table>{% else %}<p>nobody ranked (too few cases)</p>{% endif %}
{% endfor %}
<h2>预警 Flagged cadres</h2>
{% if d.flagged %}<table><tr><th>cadre</th><th>unit</th><th>flag</th><th>rule</th><th>seed</th></tr>
{% for f in d.flagged %}<tr class="flag"><td class="l">{{ f.cadre }} {{ f.name or '' }}</td><td class="l">{{ f.unit }}</td>
<td class="l">{{ f.flag }}</td><td class="l">{{ f.rule }} ({{ f.source }})</td><td>{{ f.seed }}</td></tr>{% endfor %}</table>
{% else %}<p>none</p>{% endif %}
</body></html>"""

TABLE = """{% macro table(cards) %}<table><tr><th>code</th><th>name</th><th>received</th><th>handed off</th><th>resolved</th>
{% for r in labels %}<th>{{ labels[r] }}</th>{% endfor %}<th>composite</th></tr>
{% for c in cards %}<tr><td>{{ c.subject }}</td><td class="l">{{ c.name or d.names.get(c.subject, '') }}</td><td>{{ c.counts.received }}</td>
<td>{{ c.counts.handed_off }}</td><td>{{ c.counts.resolved }}</td>{% for r in labels %}<td>{{ pct(c.rates[r]) }}</td>{% endfor %}<td>{{ pct(c.composite) }}</td></tr>
{% endfor %}</table>{% endmacro %}"""


def write(conn: Connection, county: str, period: str, out: Path,
          progress: Callable[[str], None] | None = None) -> tuple[dict, str, list[Path]]:
    """Write the report into `out`; return (figures, digest, files written). `progress` hears each stage."""
    step = progress or (lambda text: None)
    step("computing the figures")
    data = figures(conn, county, period)
    data_digest = digest(data)
    out.mkdir(parents=True, exist_ok=True)
    step("drawing the charts")
    written = [out / name for name in _charts(data, out)]
    step("writing the tables and the page")
    for name, cards in (("townships", data["townships"]), ("units", data["units"]), ("cadres", data["cadres"])):
        _csv(out / f"{name}.csv", CARD_HEADER, _card_rows(cards, data["names"]))
        written.append(out / f"{name}.csv")
    _csv(out / "rankings.csv", ["level", "rank", "cadre", "name", "unit", "unit_name", "composite", "received",
                                "handed_off", *RATE_LABELS],
         [[level, r["rank"], r["cadre"], r["name"], r["unit"], r["unit_name"], r["composite"], r["received"],
           r["handed_off"], *[r["rates"][k] for k in RATE_LABELS]]
          for level, rows in data["rankings"]["levels"].items() for r in rows])
    _csv(out / "flagged.csv", ["cadre", "unit", "flag", "rule", "seed", "source"],
         [[f["cadre"], f["unit"], f["flag"], f["rule"], f["seed"], f["source"]] for f in data["flagged"]])
    _csv(out / "trend.csv", ["month", "received", *RATE_LABELS],
         [[row["month"], row["received"], *[row.get(r) for r in RATE_LABELS]] for row in data["trend"]])
    written += [out / f"{n}.csv" for n in ("rankings", "flagged", "trend")]
    env = Environment(autoescape=select_autoescape(default=True))
    env.globals.update(pct=_pct, labels=RATE_LABELS)
    page = env.from_string(TABLE + PAGE).render(d=data, digest=data_digest, probe=PROBE)
    (out / "index.html").write_text(page, encoding="utf-8")
    written.append(out / "index.html")
    return data, data_digest, written


def publish(ledger: Ledger, county: str, period: str, rules_version: int, figures_digest: str, actor: str):
    """Close the period: append `assessment.published` (once per digest; a later digest is a correction)."""
    event = NewEvent("assessment.published", {"county": county, "period": period, "rules_version": rules_version,
                                              "digest": figures_digest},
                     Metadata(actor=actor, county=county),
                     event_id=str(uuid.uuid5(_NS, f"{county}:{period}:{figures_digest}")))
    return ledger.append(f"assessment-{county}", [event])[0]
