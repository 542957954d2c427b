"""Routing follows the ledger: it keeps every policy version, assigns each reported case, reopens a
case its resident was unsatisfied with, and keeps the worklist and the pending timers of every case.

What it appends (an assignment, a reopening) goes in the same transaction that moves routing's
checkpoint, with an event id derived from the cause's, so it happens exactly once however often the
cause is seen.
"""
from __future__ import annotations

import json
import logging
import uuid

from sqlalchemy import Connection, delete, func, select, true

from minqing.casefile import CaseFile, fold
from minqing.clock import isoformat, parse_instant
from minqing.county import CountyPolicy
from minqing.db import upsert
from minqing.ledger import Ledger, NewEvent, RecordedEvent
from services.routing.assignment import decide_assignment
from services.routing.tables import cases_table, policies_table, timers_table
from services.routing.timers import pending

log = logging.getLogger("minqing.routing")
ACTOR = "service:routing"
_NS = uuid.UUID("6f1c1b2e-3f4a-4e0b-9a51-6d1a8f0c2b77")
_POLICIES: dict[tuple[str, int], CountyPolicy] = {}


def derived_event_id(kind: str, cause: RecordedEvent) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{cause.event_id}"))


def policy_in_force(conn: Connection, county: str) -> CountyPolicy | None:
    version = conn.execute(select(func.max(policies_table.c.version))
                           .where(policies_table.c.county == county)).scalar()
    if version is None:
        return None
    cached = _POLICIES.get((county, version))
    if cached is None:
        raw = conn.execute(select(policies_table.c.policy).where(
            policies_table.c.county == county, policies_table.c.version == version)).scalar_one()
        cached = _POLICIES[(county, version)] = CountyPolicy(json.loads(raw), version)
    return cached


def load_for(conn: Connection, county: str) -> dict[str, int]:
    """Open cases per cadre of the county: duty cadres are balanced on it."""
    rows = conn.execute(select(cases_table.c.cadre, func.count()).where(
        cases_table.c.county == county, cases_table.c.is_open.is_(True)).group_by(cases_table.c.cadre))
    return {cadre: n for cadre, n in rows if cadre}


def record_case(conn: Connection, policy: CountyPolicy | None, case: CaseFile) -> None:
    """Write the worklist row and the pending timers of `case` from its folded state."""
    if case.county is None:
        return
    overdue = bool(case.resolution_due and case.marked("case.overdue", "resolution", case.resolution_due))
    upsert(conn, cases_table, {"case_id": case.case_id}, {
        "county": case.county, "tracking_no": case.tracking_no, "category": case.category,
        "township": (case.location or {}).get("township"), "status": case.status, "tier": case.tier,
        "unit": case.unit, "cadre": case.cadre, "urgency": case.urgency, "summary": case.summary,
        "response_due": case.response_due if case.status == "assigned" else None,
        "resolution_due": case.resolution_due, "overdue": overdue, "pressure": case.pressure,
        "reply_due": case.reply_due, "is_open": case.is_open,
        "version": max((h["version"] for h in case.history if h["type"] in RoutingProjection.event_types), default=0)})
    timers = pending(policy, case) if policy is not None else []
    kinds = [t.kind for t in timers]
    conn.execute(delete(timers_table).where(timers_table.c.case_id == case.case_id,
                                            timers_table.c.kind.not_in(kinds) if kinds else true()))
    if timers:      # every pending timer of the case in one multi-row statement
        statement = _insert(conn)(timers_table).values([
            {"case_id": case.case_id, "kind": t.kind, "county": case.county, "due_at": isoformat(t.due_at)}
            for t in timers])
        conn.execute(statement.on_conflict_do_update(
            index_elements=["case_id", "kind"],
            set_={"county": statement.excluded.county, "due_at": statement.excluded.due_at}))


def _insert(conn: Connection):
    if conn.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class RoutingProjection:
    name = "routing.assignments"
    event_types = frozenset({"policy.published", "case.reported", "case.merged", "case.urgency_raised",
                             "case.assigned", "case.accepted",
                             "case.progress_noted", "case.transferred", "case.escalated", "case.returned",
                             "case.joint_handling_started", "case.chased", "case.supervised",
                             "case.deadline_warned", "case.overdue", "case.resolved", "case.delivered",
                             "case.followed_up", "case.reopened", "case.closed", "case.withdrawn"})
    batch = 20       # it appends, holding the ledger's append lock until each batch commits

    def __init__(self, ledger: Ledger, config=None):
        self.ledger = ledger

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        if event.type == "policy.published":
            self._keep_policy(conn, event.data)
            return
        events = self.ledger.read_stream(event.stream, conn=conn)
        case = fold(event.data["case_id"], events)
        if event.type == "case.reported" and case.status == "reported":
            case = self._append(conn, case, events, event, "assign", self._assignment)
        elif event.type == "case.followed_up" and case.status == "followed_up" and case.rating == "unsatisfied" \
                and [e for e in events if e.type == "case.followed_up"][-1].event_id == event.event_id:
            case = self._append(conn, case, events, event, "reopen", self._reopening)
        record_case(conn, policy_in_force(conn, case.county) if case.county else None, case)

    def _keep_policy(self, conn: Connection, d: dict) -> None:
        exists = conn.execute(select(func.count()).select_from(policies_table).where(
            policies_table.c.county == d["county"], policies_table.c.version == d["version"])).scalar()
        if exists:
            return
        conn.execute(policies_table.insert().values(county=d["county"], version=d["version"],
                                                    policy=json.dumps(d["policy"], ensure_ascii=False)))
        # A new version may move the timers (warning hours, the pressure ladder): rewrite the pending
        # timers of the county's open cases, so none waits on the old numbers.
        policy = policy_in_force(conn, d["county"])
        open_ids = [r.case_id for r in conn.execute(select(cases_table.c.case_id).where(
            cases_table.c.county == d["county"], cases_table.c.is_open.is_(True)))]
        for case_id in open_ids:
            record_case(conn, policy, fold(case_id, self.ledger.read_stream(f"case-{case_id}", conn=conn)))

    def _append(self, conn, case, events, cause, kind, decide) -> CaseFile:
        policy = policy_in_force(conn, cause.county)
        if policy is None:
            raise LookupError(f"no policy published for county {cause.county}")
        new = decide(conn, policy, case, cause)
        meta = cause.metadata.caused_by(cause, ACTOR)
        recorded = self.ledger.append(
            cause.stream, [NewEvent(t, d, meta, event_id=derived_event_id(f"{kind}:{i}", cause))
                           for i, (t, d) in enumerate(new)],
            expected_version=case.version, conn=conn)
        for r in recorded:
            case = case.apply(r)
        return case

    @staticmethod
    def _assignment(conn, policy, case, reported):
        at = parse_instant(reported.recorded_at)
        return [("case.assigned", decide_assignment(policy, reported.data, at, load_for(conn, case.county)))]

    @staticmethod
    def _reopening(conn, policy, case, followed_up):
        """Seed 001's closed loop (接洽、登记、转办、督办、回访): an unsatisfied follow-up reopens the case at
        the tier that resolved it, or one up where the county's policy says `reopen: up`."""
        at = parse_instant(followed_up.recorded_at)
        start = case.tier
        if policy.escalation["reopen"] == "up" and policy.next_tier(case.tier) is not None:
            start = policy.next_tier(case.tier)["code"]
        reported = {"case_id": case.case_id, "category": case.category, "location": case.location}
        assigned = decide_assignment(policy, reported, at, load_for(conn, case.county), start_tier=start,
                                     first_contact=case.first_contact)
        reason = f"the resident was unsatisfied with the result (回访); reopened at tier {assigned['tier']}"
        return [("case.reopened", {"case_id": case.case_id, "reason": reason}), ("case.assigned", assigned)]

    @staticmethod
    def drop(conn: Connection) -> None:
        for table in (timers_table, cases_table, policies_table):
            conn.execute(table.delete())
