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
- **Promises (承诺期限兑现, seed 003: 实行承诺服务，限时办结).** A lapsed *resolution* deadline is a
  promise broken (`deadline_lapsed`): for the holder (cadre and unit), and for the case's township and
  the county, whose promise to the resident it was. A case whose deadline lapsed is not a promise kept
  for the township and county even if a later holder resolves it within its own fresh deadline; that
  later holder kept the promise of their holding.
- **Hand-offs (issue #18 §7).** A hand-off is justified, and counts as `handed_off` to the holder
  (cadre and unit) it left, when
  - a return (退回, `case.returned`) is upheld: a supervisor re-dispatches the case to another unit;
  - an escalation the holder asked for (`automatic: false`) is one the county policy in force requires:
    the category starts above the tier the case left, or that tier has no time limit for the
    category (大事不出乡镇: the matter belongs higher).
  A justified hand-off takes the case out of that holder's resolution denominator (`in_hand`, see
  scorecards.py). A lapse still charges: an automatic escalation (overdue), a return overturned (the
  supervisor sends it back to the unit that returned it: `return_overturned`), or an escalation the
  policy does not require; the holding stays received and unresolved.
- **Satisfaction (满意率) and solution (解决率).** The 回访 rating goes to the resolver and their unit
  (and the case's township and the county); so does the resident's answer whether the matter was
  actually solved (`solved` true/false: `solved` / `unsolved`; absent in older events and when not
  asked: neither). `unreachable` is counted, but is not a rating.
- **Reopened.** An unsatisfied rating that reopens the case is charged to the resolver whose result
  was rejected.
- **Joint handling (会诊/联办).** The lead (the holding unit and cadre) takes full credit and charge;
  each co-unit records a joint participation and nothing else. One case, one responsible lead.
- **On site (现场办结).** A resolution with `on_site: true` credits the resolver.
- **Field visits (民情下访).** One visit day per cadre and calendar day, however many hamlets; the
  households reached are summed (seed 001's monthly liaison contacts).

A fact is dated by its event's local date in the county's time zone; that date's month, half-year
and year are the periods it counts in.

**Counting rule (issue #17 §4).** Facts record every event, but a figure counts a *case* once per
subject per period: `received`, `responded_on_time`, `resolved`, `resolved_on_time`,
`resolved_on_site`, `handed_off` and `deadline_lapsed` are numbers of distinct cases (scorecards.py). A case resolved,
rated unsatisfied, reopened and resolved again in one month is one case received and one resolved,
for its cadre as for its township and the county; the reopening and each rating still count as events.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

from minqing.clock import parse_instant
from minqing.ledger import RecordedEvent

RATINGS = {"satisfied", "basically_satisfied", "unsatisfied"}


class Fact(NamedTuple):        # a tuple: a rebuild makes ~4 per event, and a frozen dataclass costs twice as much
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
    category: str | None = None
    returned_unit: str | None = None       # a return (退回) waiting for a supervisor's re-dispatch
    returned_cadre: str | None = None


def replace(state: CaseState, **changes) -> CaseState:
    """dataclasses.replace for a CaseState, without its per-call field checks and the frozen __init__
    (a quarter of a rebuild's attribution time): a new state with the fields `changes` names changed."""
    new = object.__new__(CaseState)
    new.__dict__.update(state.__dict__, **changes)
    return new


def _holder(state: CaseState) -> list[tuple[str, str]]:
    return [("cadre", state.cadre), ("unit", state.unit)] if state.unit else []


def _resolver(state: CaseState) -> list[tuple[str, str]]:
    return [("cadre", state.resolver_cadre), ("unit", state.resolver_unit)] if state.resolver_unit else []


def _case_level(state: CaseState) -> list[tuple[str, str]]:
    out = [("county", state.county)] if state.county else []
    return out + ([("township", state.township)] if state.township else [])


def _facts(metric: str, subjects: list[tuple[str, str]], value: float = 1.0) -> list[Fact]:
    new = tuple.__new__         # Fact(...) without its Python-level __new__: a rebuild makes millions
    return [new(Fact, (metric, kind, subject, value)) for kind, subject in subjects if subject]


def _in_time(at: str, due: str | None) -> bool:
    if due is None:
        return False
    if len(at) == len(due) == 27 and at[-1] == due[-1] == "Z":     # both in clock.isoformat's one form:
        return at <= due                                            # fixed width, UTC, ordered as text
    return parse_instant(at) <= parse_instant(due)


def escalation_required(policy: Mapping | None, category: str | None, from_tier: str) -> bool:
    """Whether the county policy in force says the case belongs above `from_tier`: its category starts
    at a higher tier, or `from_tier` has no time limit for it (no power over it). Unknown: not required."""
    cat = ((policy or {}).get("categories") or {}).get(category or "")
    if cat is None:
        return False
    ladder = [t["code"] if isinstance(t, Mapping) else t for t in policy.get("tiers", [])]
    if from_tier in ladder and cat["start_tier"] in ladder and ladder.index(from_tier) < ladder.index(cat["start_tier"]):
        return True
    return from_tier not in cat["time_limits"]


def attribute(state: CaseState, event: RecordedEvent, policy: Mapping | None = None) -> tuple[CaseState, list[Fact]]:
    """The facts one case event adds, and the case state after it. `policy` is the county policy in
    force at the event (tiers and categories), which decides whether an escalation was required."""
    d, at = event.data, event.recorded_at
    facts: list[Fact] = []
    if event.type == "case.reported":
        state = replace(state, county=d["county"], township=d["location"]["township"], category=d.get("category"))
    elif event.type in ("case.assigned", "case.transferred", "case.escalated"):
        new_unit = d.get("unit") or d["to_unit"]
        new_cadre = d.get("cadre") or d["to_cadre"]
        if event.type == "case.escalated":
            left = [("cadre", d.get("from_cadre") or state.cadre), ("unit", d["from_unit"])]
            if d["automatic"]:
                facts += _facts("escalated_overdue", left + _case_level(state))
            elif escalation_required(policy, state.category, d["from_tier"]):
                facts += _facts("handed_off", left)
        if state.returned_unit and event.type == "case.transferred":
            returned = [("cadre", state.returned_cadre), ("unit", state.returned_unit)]
            facts += _facts("handed_off" if new_unit != state.returned_unit else "return_overturned", returned)
        if not state.counted:
            facts += _facts("received", _case_level(state))
        state = replace(state, unit=new_unit, cadre=new_cadre, response_due=d.get("response_due"),
                        resolution_due=d["resolution_due"], responded=False, counted=True, co_units=(),
                        returned_unit=None, returned_cadre=None)
        facts += _facts("received", _holder(state))
    elif event.type == "case.returned":
        if state.unit:
            state = replace(state, returned_unit=state.unit, returned_cadre=state.cadre)
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
        holder = [("cadre", d["holder_cadre"]), ("unit", d["holder_unit"])]
        facts += _facts("overdue", holder)
        if d["deadline"] == "resolution":
            facts += _facts("deadline_lapsed", holder + _case_level(state))
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
        if d.get("solved") is not None:
            facts += _facts("solved" if d["solved"] else "unsolved", _resolver(state) + _case_level(state))
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
