"""The assessment projection: case and visit events in, attributed facts out (attribution.py says
who gets what). Time comes from the events (principle 6): a fact's month is its event's local date.
Dropping these tables and replaying the ledger rebuilds them row for row (`minqing consumer rebuild
assessment.facts`; tests/interface/test_assessment_replay.py)."""
from __future__ import annotations

import dataclasses
import json

from sqlalchemy import Connection, select

from minqing.db import bulk_insert, upsert, upsert_many
from minqing.ledger import RecordedEvent
from services.assessment.attribution import CaseState, Fact, attribute, visit_facts
from services.assessment.periods import DEFAULT_TZ, local_day
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
        case_ids = list({e.data["case_id"] for e in events if e.type in CASE_EVENTS})
        states: dict[str, CaseState] = {}
        for chunk in range(0, len(case_ids), 1000):
            for row in conn.execute(select(cases_table).where(cases_table.c.case_id.in_(case_ids[chunk:chunk + 1000]))):
                raw = json.loads(row.state)
                states[row.case_id] = CaseState(**{**raw, "co_units": tuple(raw["co_units"])})
        zones, policies = {}, {}
        for r in conn.execute(select(counties_table)):
            zones[r.county], policies[r.county] = r.timezone, json.loads(r.policy)
        changed: set[str] = set()
        rows: list[dict] = []
        for event in events:
            d = event.data
            if event.type in ("policy.published", "assessment.rules_published"):
                self._configuration(conn, event)
                if event.type == "policy.published":
                    zones[d["county"]] = d["policy"]["timezone"]
                    policies[d["county"]] = policy_view(d["policy"])
            elif event.type == "visit.logged":
                key = {"county": d["county"], "cadre": d["cadre"], "day": str(d["day"])}
                first = conn.execute(select(visit_days_table.c.day).where(
                    *(getattr(visit_days_table.c, k) == v for k, v in key.items()))).first() is None
                if first:
                    conn.execute(visit_days_table.insert().values(**key))
                rows += self._rows(event, visit_facts(event, first), str(d["day"])[:7], None)
            elif event.type in CASE_EVENTS:
                state, facts = attribute(states.get(d["case_id"]) or CaseState(d["case_id"]), event,
                                         policies.get(event.county))
                states[d["case_id"]] = state
                changed.add(d["case_id"])
                month = local_day(event.recorded_at, zones.get(event.county, DEFAULT_TZ))[:7]
                rows += self._rows(event, facts, month, d["case_id"])
        bulk_insert(conn, facts_table, rows)
        if changed:
            upsert_many(conn, cases_table, "case_id", [
                {"case_id": c, "state": json.dumps(dataclasses.asdict(states[c]), sort_keys=True)} for c in changed])

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
    def _rows(event: RecordedEvent, facts: list[Fact], month: str, case_id: str | None) -> list[dict]:
        return [{"position": event.position, "metric": f.metric, "kind": f.kind, "subject": f.subject,
                 "county": event.county, "month": month, "value": f.value, "case_id": case_id,
                 "event_type": event.type} for f in facts]

    @staticmethod
    def drop(conn: Connection) -> None:
        for table in (facts_table, cases_table, visit_days_table, rules_table, counties_table):
            conn.execute(table.delete())
