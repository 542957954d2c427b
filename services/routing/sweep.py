"""The timer sweep: reads the timers that are due (an index range scan, so its cost follows the
due work, not the open cases), re-decides each case on its current stream and appends what fell due
with the version it read. A cadre who acted meanwhile wins; the case is then decided again on its
new state in the next round. Two sweeps at once are harmless: event ids are derived from the timer's
cause, and each append names the version it read.

The sweep only appends; routing's projection alone rewrites the timer rows when it sees the new
events. One writer per table keeps lock order simple on PostgreSQL (the projection may hold timer
rows while it waits for the ledger's append lock; the sweep never waits for timer rows). Until the
projection catches up, a fired timer's row stays and the next sweep re-decides the case and finds
nothing due.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from minqing.casefile import fold, stream_of
from minqing.clock import Clock, isoformat
from minqing.db import read_transaction
from minqing.ledger import ConcurrencyError, Ledger, Metadata, NewEvent
from services.routing.projection import load_for, policy_in_force
from services.routing.tables import timers_table
from services.routing.timers import ACTOR, fire

log = logging.getLogger("minqing.routing.sweep")


@dataclass
class SweepResult:
    due: int = 0          # case timers found due
    appended: int = 0     # events appended
    conflicts: int = 0    # cases that moved meanwhile (decided again next round)


class Sweeper:
    def __init__(self, ledger: Ledger, clock: Clock, *, limit: int = 1000):
        self.ledger = ledger
        self.clock = clock
        self.limit = limit

    def due_cases(self, now: datetime) -> list[str]:
        with read_transaction(self.ledger.engine) as conn:
            rows = conn.execute(select(timers_table.c.case_id).where(timers_table.c.due_at <= isoformat(now))
                                .order_by(timers_table.c.due_at).limit(self.limit)).all()
        seen: dict[str, None] = {}
        for (case_id,) in rows:
            seen.setdefault(case_id)
        return list(seen)

    def sweep(self) -> SweepResult:
        now = self.clock.now()
        result = SweepResult()
        for case_id in self.due_cases(now):
            result.due += 1
            try:
                result.appended += self._fire(case_id, now)
            except ConcurrencyError:
                result.conflicts += 1
        if result.appended or result.conflicts:
            log.info("timer sweep: %d due, %d events, %d moved meanwhile", result.due, result.appended, result.conflicts)
        return result

    def _fire(self, case_id: str, now: datetime) -> int:
        stream = stream_of(case_id)
        with read_transaction(self.ledger.engine) as conn:
            events = self.ledger.read_stream(stream, conn=conn)
            case = fold(case_id, events)
            policy = policy_in_force(conn, case.county) if case.county else None
            steps = fire(policy, case, now, load_for(conn, case.county)) if policy is not None else []
        if not steps:
            return 0
        meta = Metadata(actor=ACTOR, county=case.county, correlation_id=case_id, causation_id=events[-1].event_id)
        self.ledger.append(stream, [NewEvent(s.type, s.data, meta, event_id=s.event_id) for s in steps],
                           expected_version=case.version)
        return len(steps)
