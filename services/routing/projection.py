"""Routing follows the ledger: it keeps every policy version, and assigns each reported case.

The assignment is appended in the same transaction that moves routing's checkpoint, with an event id
derived from the report's, so it happens exactly once however often the report is seen.
"""
from __future__ import annotations

import json
import logging
import uuid

from sqlalchemy import Connection, func, select

from minqing.casefile import fold
from minqing.clock import parse_instant
from minqing.county import CountyPolicy
from minqing.ledger import Ledger, NewEvent, RecordedEvent
from services.routing.assignment import decide_assignment
from services.routing.tables import policies_table

log = logging.getLogger("minqing.routing")
ACTOR = "service:routing"
_NS = uuid.UUID("6f1c1b2e-3f4a-4e0b-9a51-6d1a8f0c2b77")


def derived_event_id(kind: str, cause: RecordedEvent) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{cause.event_id}"))


def policy_in_force(conn: Connection, county: str) -> CountyPolicy | None:
    row = conn.execute(select(policies_table).where(policies_table.c.county == county)
                       .order_by(policies_table.c.version.desc()).limit(1)).first()
    return CountyPolicy(json.loads(row.policy), row.version) if row else None


class RoutingProjection:
    name = "routing.assignments"
    event_types = frozenset({"policy.published", "case.reported"})
    batch = 20       # it appends, holding the ledger's append lock until each batch commits

    def __init__(self, ledger: Ledger, config=None):
        self.ledger = ledger

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        if event.type == "policy.published":
            d = event.data
            exists = conn.execute(select(func.count()).select_from(policies_table).where(
                policies_table.c.county == d["county"], policies_table.c.version == d["version"])).scalar()
            if not exists:
                conn.execute(policies_table.insert().values(county=d["county"], version=d["version"],
                                                            policy=json.dumps(d["policy"], ensure_ascii=False)))
        elif event.type == "case.reported":
            self._assign(conn, event)

    def _assign(self, conn: Connection, reported: RecordedEvent) -> None:
        case = fold(reported.data["case_id"], self.ledger.read_stream(reported.stream, conn=conn))
        if case.status != "reported":
            return   # already assigned, merged or withdrawn: nothing to decide
        policy = policy_in_force(conn, reported.county)
        if policy is None:
            raise LookupError(f"no policy published for county {reported.county}")
        data = decide_assignment(policy, reported.data, parse_instant(reported.recorded_at))
        self.ledger.append(reported.stream, [NewEvent("case.assigned", data, reported.metadata.caused_by(reported, ACTOR),
                                                      event_id=derived_event_id("assign", reported))],
                           expected_version=case.version, conn=conn)

    @staticmethod
    def drop(conn: Connection) -> None:
        conn.execute(policies_table.delete())
