"""The assessment projection: case and visit events in, attributed facts out (attribution.py says
who gets what). Time comes from the events (principle 6): a fact's month is its event's local date.
Dropping these tables and replaying the ledger rebuilds them row for row (`minqing consumer rebuild
assessment.facts`; tests/interface/test_assessment_replay.py)."""
from __future__ import annotations

import dataclasses
import json
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from minqing.clock import parse_instant
from minqing.db import upsert
from minqing.ledger import RecordedEvent
from services.assessment.attribution import CaseState, Fact, attribute, visit_facts
from services.assessment.tables import cases_table, counties_table, facts_table, rules_table, visit_days_table

CASE_EVENTS = frozenset({"case.reported", "case.assigned", "case.transferred", "case.escalated", "case.accepted",
                         "case.joint_handling_started", "case.overdue", "case.resolved", "case.followed_up",
                         "case.reopened"})
DEFAULT_TZ = "Asia/Shanghai"


def timezone_of(conn: Connection, county: str) -> str:
    row = conn.execute(select(counties_table.c.timezone).where(counties_table.c.county == county)).first()
    return row.timezone if row else DEFAULT_TZ


def local_day(instant: str, tz: str) -> str:
    return parse_instant(instant).astimezone(ZoneInfo(tz)).date().isoformat()


class AssessmentFacts:
    name = "assessment.facts"
    event_types = CASE_EVENTS | {"visit.logged", "policy.published", "assessment.rules_published"}

    def __init__(self, ledger=None, config=None):
        pass

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        d = event.data
        if event.type == "policy.published":
            upsert(conn, counties_table, {"county": d["county"]},
                   {"timezone": d["policy"]["timezone"],
                    "policy": json.dumps({"cadres": d["policy"]["cadres"], "units": d["policy"]["units"],
                                          "townships": [{"code": t["code"], "name": t["name"]}
                                                        for t in d["policy"]["townships"]],
                                          "tiers": d["policy"]["tiers"], "name": d["policy"]["name"],
                                          "places": sorted(code for t in d["policy"]["townships"]
                                                           for v in t["villages"]
                                                           for code in [v["code"], *(h["code"] for h in v["hamlets"])])},
                                         ensure_ascii=False, sort_keys=True)})
            return
        if event.type == "assessment.rules_published":
            conn.execute(rules_table.insert().values(county=d["county"], version=d["version"],
                                                     published_at=event.recorded_at, position=event.position,
                                                     document=json.dumps(d["rules"], sort_keys=True)))
            return
        tz = timezone_of(conn, event.county)
        if event.type == "visit.logged":
            key = {"county": d["county"], "cadre": d["cadre"], "day": str(d["day"])}
            first = conn.execute(select(visit_days_table.c.day).where(
                *(getattr(visit_days_table.c, k) == v for k, v in key.items()))).first() is None
            if first:
                conn.execute(visit_days_table.insert().values(**key))
            self._write(conn, event, visit_facts(event, first), str(d["day"])[:7], None)
            return
        row = conn.execute(select(cases_table.c.state).where(cases_table.c.case_id == d["case_id"])).first()
        state = CaseState(**{**json.loads(row.state), "co_units": tuple(json.loads(row.state)["co_units"])}) \
            if row else CaseState(d["case_id"])
        state, facts = attribute(state, event)
        upsert(conn, cases_table, {"case_id": d["case_id"]},
               {"state": json.dumps(dataclasses.asdict(state), sort_keys=True)})
        self._write(conn, event, facts, local_day(event.recorded_at, tz)[:7], d["case_id"])

    @staticmethod
    def _write(conn: Connection, event: RecordedEvent, facts: list[Fact], month: str, case_id: str | None) -> None:
        if facts:
            conn.execute(facts_table.insert(), [
                {"position": event.position, "metric": f.metric, "kind": f.kind, "subject": f.subject,
                 "county": event.county, "month": month, "value": f.value, "case_id": case_id,
                 "event_type": event.type} for f in facts])

    @staticmethod
    def drop(conn: Connection) -> None:
        for table in (facts_table, cases_table, visit_days_table, rules_table, counties_table):
            conn.execute(table.delete())
