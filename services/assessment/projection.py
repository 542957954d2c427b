"""The assessment projection: case and visit events in, attributed facts out (attribution.py says
who gets what). Time comes from the events (principle 6): a fact's month is its event's local date.
Dropping these tables and replaying the ledger rebuilds them row for row (`minqing consumer rebuild
assessment.facts`; tests/interface/test_assessment_replay.py)."""
from __future__ import annotations

import json

from sqlalchemy import Connection, select

from minqing.db import bulk_insert, upsert, upsert_many
from minqing.ledger import RecordedEvent
from services.assessment.attribution import CaseState, Fact, attribute, visit_facts
from services.assessment.periods import DEFAULT_TZ, local_month
from services.assessment.tables import cases_table, counties_table, facts_table, rules_table, visit_days_table

CASE_EVENTS = frozenset({"case.reported", "case.assigned", "case.transferred", "case.escalated", "case.accepted",
                         "case.joint_handling_started", "case.overdue", "case.resolved", "case.followed_up",
                         "case.reopened", "case.returned"})


def policy_view(policy: dict) -> dict:
    """What assessment keeps of a published county policy: names (cards show them), places (visits),
    and the tiers and categories' ladders (attribution.escalation_required)."""
    return {"cadres": policy["cadres"], "units": policy["units"],
            "townships": [{"code": t["code"], "name": t["name"]} for t in policy["townships"]],
            "tiers": policy["tiers"], "name": policy["name"],
            "categories": {c["code"]: {"start_tier": c["start_tier"], "time_limits": sorted(c["time_limits"])}
                           for c in policy.get("categories", [])},
            "places": sorted(code for t in policy["townships"] for v in t["villages"]
                             for code in [v["code"], *(h["code"] for h in v["hamlets"])])}


FACT_COLUMNS = ("position", "metric", "kind", "subject", "county", "month", "value", "case_id", "event_type")


_STATE_ENCODER = json.JSONEncoder(sort_keys=True)      # json.dumps(…, sort_keys=True) makes one per call


def state_json(state: CaseState) -> str:
    """A case state as stored (what json.dumps(dataclasses.asdict(state), sort_keys=True) gives,
    without its deep copy)."""
    return _STATE_ENCODER.encode(vars(state))


def load_states(conn: Connection, case_ids: list[str], into: dict[str, CaseState]) -> None:
    for chunk in range(0, len(case_ids), 1000):
        for row in conn.execute(select(cases_table).where(cases_table.c.case_id.in_(case_ids[chunk:chunk + 1000]))):
            raw = json.loads(row.state)
            into[row.case_id] = CaseState(**{**raw, "co_units": tuple(raw["co_units"])})


def load_counties(conn: Connection) -> tuple[dict[str, str], dict[str, dict]]:
    zones, policies = {}, {}
    for r in conn.execute(select(counties_table)):
        zones[r.county], policies[r.county] = r.timezone, json.loads(r.policy)
    return zones, policies


class Attribution:
    """The projection's one pass over events, live and in a rebuild alike: the case states, county
    zones and policies it reads and updates, and the fact rows (FACT_COLUMNS tuples) it adds.
    `first_visit(conn, key)` says whether a visit is the cadre's first of that day, and records it;
    `configure(conn, event)` records a policy or rules publication."""

    def __init__(self, states: dict[str, CaseState], zones: dict[str, str], policies: dict[str, dict], first_visit,
                 configure=None):
        self.states, self.zones, self.policies, self.first_visit = states, zones, policies, first_visit
        self.configure = configure or AssessmentFacts._configuration
        self.changed: set[str] = set()
        self.rows: list[tuple] = []

    def apply(self, conn: Connection, event) -> None:
        d = event.data
        if event.type in CASE_EVENTS:
            case_id = d["case_id"]
            state, facts = attribute(self.states.get(case_id) or CaseState(case_id), event,
                                     self.policies.get(event.county))
            self.states[case_id] = state
            self.changed.add(case_id)
            month = local_month(event.recorded_at, self.zones.get(event.county, DEFAULT_TZ))
            self._add(event, facts, month, case_id)
        elif event.type == "visit.logged":
            key = {"county": d["county"], "cadre": d["cadre"], "day": str(d["day"])}
            self._add(event, visit_facts(event, self.first_visit(conn, key)), str(d["day"])[:7], None)
        elif event.type in ("policy.published", "assessment.rules_published"):
            self.configure(conn, event)
            if event.type == "policy.published":
                self.zones[d["county"]] = d["policy"]["timezone"]
                self.policies[d["county"]] = policy_view(d["policy"])

    def _add(self, event, facts: list[Fact], month: str, case_id: str | None) -> None:
        position, county, type_ = event.position, event.county, event.type
        self.rows += [(position, metric, kind, subject, county, month, value, case_id, type_)
                      for metric, kind, subject, value in facts]


def _first_visit_recorded(conn: Connection, key: dict) -> bool:
    first = conn.execute(select(visit_days_table.c.day).where(
        *(getattr(visit_days_table.c, k) == v for k, v in key.items()))).first() is None
    if first:
        conn.execute(visit_days_table.insert().values(**key))
    return first


class AssessmentFacts:
    name = "assessment.facts"
    event_types = CASE_EVENTS | {"visit.logged", "policy.published", "assessment.rules_published"}

    def __init__(self, ledger=None, config=None):
        pass

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        self.apply_batch(conn, [event])

    def apply_batch(self, conn: Connection, events: list[RecordedEvent]) -> None:
        """Apply events in order, reading the case states they need in one query and writing the facts
        and states in one statement each (a rebuild goes through thousands of events a transaction)."""
        states: dict[str, CaseState] = {}
        load_states(conn, list({e.data["case_id"] for e in events if e.type in CASE_EVENTS}), states)
        zones, policies = load_counties(conn)
        run = Attribution(states, zones, policies, _first_visit_recorded)
        for event in events:
            run.apply(conn, event)
        bulk_insert(conn, facts_table, [dict(zip(FACT_COLUMNS, row)) for row in run.rows])
        if run.changed:
            upsert_many(conn, cases_table, "case_id", [
                {"case_id": c, "state": state_json(states[c])} for c in run.changed])

    def replayer(self):
        """The rebuild's faster path (minqing.replay; replay.py here), same facts row for row."""
        from services.assessment.replay import AssessmentReplay
        return AssessmentReplay()

    @staticmethod
    def _configuration(conn: Connection, event: RecordedEvent) -> None:
        d = event.data
        if event.type == "policy.published":
            upsert(conn, counties_table, {"county": d["county"]},
                   {"timezone": d["policy"]["timezone"],
                    "policy": json.dumps(policy_view(d["policy"]), ensure_ascii=False, sort_keys=True)})
        else:
            conn.execute(rules_table.insert().values(county=d["county"], version=d["version"],
                                                     published_at=event.recorded_at, position=event.position,
                                                     document=json.dumps(d["rules"], sort_keys=True)))

    @staticmethod
    def drop(conn: Connection) -> None:
        """Empty the projection's tables for a rebuild (its service is stopped). On PostgreSQL by
        TRUNCATE: a DELETE of every fact left as many dead rows for the replay's writes and vacuum."""
        tables = (facts_table, cases_table, visit_days_table, rules_table, counties_table)
        if conn.engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"TRUNCATE {', '.join(t.name for t in tables)}")
            return
        for table in tables:
            conn.execute(table.delete())
