"""Attribution: who is credited or charged when a case moves between hands (issue #7 §2).
Every rule is here, and docs/assessment.md says the same in words.

- **Received.** Each holding counts as received for the unit and cadre that get it (an assignment,
  a transfer, an escalation, a reassignment after reopening). The township the case is in, and the
  county, count the case once, at its first assignment. A duplicate merged into an earlier case
  (`case.merged`) is never assigned, so it counts nowhere: the original counts once.
- **Responded (响应).** A holder responds by accepting the case, or by resolving it without
  accepting it first. It responded in time when that happened by the holding's `response_due`.
  The township and the county count the case's first response only, as they count it received once.
- **Resolved (办结).** The resolver (the cadre who resolved it, and their unit) is credited. It was
  resolved on time (承诺期限兑现) when it was resolved by the `resolution_due` of the holding in force.
  A transfer keeps the promised deadline (routing), so a sideways move buys no time.
- **Lapsed deadlines.** The holder when a deadline lapsed is charged (`case.overdue`). When the
  lapse moved the case up automatically (`case.escalated`, `automatic: true`), the holder it left is
  charged with an escalation away.
- **Satisfaction (满意率).** The 回访 rating goes to the resolver and their unit (and the case's
  township and the county). `unreachable` is counted, but is not a rating.
- **Reopened.** An unsatisfied rating that reopens the case is charged to the resolver whose result
  was rejected.
- **Joint handling (会诊/联办).** The lead (the holding unit and cadre) takes full credit and charge;
  each co-unit records a joint participation and nothing else. One case, one responsible lead.
- **On site (现场办结).** A resolution with `on_site: true` credits the resolver.
- **Field visits (民情下访).** One visit day per cadre and calendar day, however many hamlets; the
  households reached are summed (seed 001's monthly liaison contacts).

A fact is dated by its event's local date in the county's time zone; that date's month, half-year
and year are the periods it counts in.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from minqing.clock import parse_instant
from minqing.ledger import RecordedEvent

RATINGS = {"satisfied", "basically_satisfied", "unsatisfied"}


@dataclass(frozen=True)
class Fact:
    metric: str
    kind: str          # cadre | unit | township | county
    subject: str
    value: float = 1.0


@dataclass(frozen=True)
class CaseState:
    """What attribution must remember about a case between its events."""
    case_id: str
    county: str | None = None
    township: str | None = None
    unit: str | None = None
    cadre: str | None = None
    response_due: str | None = None
    resolution_due: str | None = None
    responded: bool = False
    counted: bool = False              # counted as received at township and county level
    case_responded: bool = False       # the case's first response happened (township and county count it)
    resolver_unit: str | None = None
    resolver_cadre: str | None = None
    co_units: tuple[str, ...] = field(default_factory=tuple)


def _holder(state: CaseState) -> list[tuple[str, str]]:
    return [("cadre", state.cadre), ("unit", state.unit)] if state.unit else []


def _resolver(state: CaseState) -> list[tuple[str, str]]:
    return [("cadre", state.resolver_cadre), ("unit", state.resolver_unit)] if state.resolver_unit else []


def _case_level(state: CaseState) -> list[tuple[str, str]]:
    out = [("county", state.county)] if state.county else []
    return out + ([("township", state.township)] if state.township else [])


def _facts(metric: str, subjects: list[tuple[str, str]], value: float = 1.0) -> list[Fact]:
    return [Fact(metric, kind, subject, value) for kind, subject in subjects if subject]


def _in_time(at: str, due: str | None) -> bool:
    return due is not None and parse_instant(at) <= parse_instant(due)


def attribute(state: CaseState, event: RecordedEvent) -> tuple[CaseState, list[Fact]]:
    """The facts one case event adds, and the case state after it."""
    d, at = event.data, event.recorded_at
    facts: list[Fact] = []
    if event.type == "case.reported":
        state = replace(state, county=d["county"], township=d["location"]["township"])
    elif event.type in ("case.assigned", "case.transferred", "case.escalated"):
        new_unit = d.get("unit") or d["to_unit"]
        new_cadre = d.get("cadre") or d["to_cadre"]
        if event.type == "case.escalated" and d["automatic"]:
            facts += _facts("escalated_overdue", [("cadre", d.get("from_cadre") or state.cadre),
                                                  ("unit", d["from_unit"])] + _case_level(state))
        if not state.counted:
            facts += _facts("received", _case_level(state))
        state = replace(state, unit=new_unit, cadre=new_cadre, response_due=d.get("response_due"),
                        resolution_due=d["resolution_due"], responded=False, counted=True, co_units=())
        facts += _facts("received", _holder(state))
    elif event.type == "case.accepted":
        if not state.responded and state.unit:
            if _in_time(at, state.response_due):
                facts += _facts("responded_on_time", _holder(state) + ([] if state.case_responded else _case_level(state)))
            state = replace(state, responded=True, case_responded=True, cadre=d["cadre"])
    elif event.type == "case.joint_handling_started":
        co_units = tuple(dict.fromkeys(u for u in d["co_units"] if u != state.unit))     # each once, not the lead
        state = replace(state, co_units=co_units)
        facts += _facts("joint_participation", [("unit", u) for u in co_units])
    elif event.type == "case.overdue":
        facts += _facts("overdue", [("cadre", d["holder_cadre"]), ("unit", d["holder_unit"])])
    elif event.type == "case.resolved":
        resolver = [("cadre", d["cadre"]), ("unit", d["unit"])]
        if not state.responded and _in_time(at, state.response_due):
            facts += _facts("responded_on_time", resolver + ([] if state.case_responded else _case_level(state)))
        on_time = _in_time(at, state.resolution_due)
        facts += _facts("resolved", resolver + _case_level(state))
        if on_time:
            facts += _facts("resolved_on_time", resolver + _case_level(state))
        if d["on_site"]:
            facts += _facts("resolved_on_site", resolver + _case_level(state))
        state = replace(state, responded=True, case_responded=True, resolver_unit=d["unit"], resolver_cadre=d["cadre"])
    elif event.type == "case.followed_up":
        rating = d["rating"]
        metric = rating if rating in RATINGS else "unreachable"
        facts += _facts(metric, _resolver(state) + _case_level(state))
    elif event.type == "case.reopened":
        facts += _facts("reopened", _resolver(state) + _case_level(state))
        state = replace(state, resolver_unit=None, resolver_cadre=None)
    return state, facts


def visit_facts(event: RecordedEvent, first_of_day: bool) -> list[Fact]:
    """A `visit.logged`: a visit day (the first visit of the cadre's day only) and its households."""
    d = event.data
    facts = [Fact("households", "cadre", d["cadre"], float(d["households"]))]
    if first_of_day:
        facts.append(Fact("visit_days", "cadre", d["cadre"]))
    return facts
