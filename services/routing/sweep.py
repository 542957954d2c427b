"""The timer sweep: reads the timers that are due (an index range scan, so its cost follows the
due work, not the open cases), re-decides each case on its current stream and appends what fell due
with the version it read. A cadre who acted meanwhile wins; the case is then decided again on its
new state in the next round. Two sweeps at once are harmless: event ids are derived from the timer's
cause, and each append names the version it read.

A round reads every due case's stream in one query and appends all the decisions in one
transaction; when any case moved meanwhile, the round falls back to one append per case, so one
busy case does not hold up the others.

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
from minqing.ledger import ConcurrencyError, DuplicateEventIdError, Ledger, Metadata, NewEvent, StreamWrite
from services.routing.due_streams import read_due_streams
from services.routing.projection import load_for, policy_in_force
from services.routing.tables import timers_table
from services.routing.timers import ACTOR, fire

log = logging.getLogger("minqing.routing.sweep")


@dataclass
class SweepResult:
    due: int = 0          # cases with a timer due
    appended: int = 0     # events appended
    conflicts: int = 0    # cases that moved meanwhile (decided again next round)
    failed: int = 0       # cases that could not be decided (logged; the others go on)


class Sweeper:
    def __init__(self, ledger: Ledger, clock: Clock, *, limit: int = 1000):
        self.ledger = ledger
        self.clock = clock
        self.limit = limit     # cases per round

    def due_cases(self, now: datetime) -> list[str]:
        """Up to `limit` cases with a timer due, earliest first (a case may have several rows due)."""
        with read_transaction(self.ledger.engine) as conn:
            rows = conn.execute(select(timers_table.c.case_id).where(timers_table.c.due_at <= isoformat(now))
                                .order_by(timers_table.c.due_at).limit(self.limit * 3)).all()
        seen: dict[str, None] = {}
        for (case_id,) in rows:
            seen.setdefault(case_id)
        return list(seen)[:self.limit]

    def sweep(self) -> SweepResult:
        now = self.clock.now()
        case_ids = self.due_cases(now)
        result = SweepResult(due=len(case_ids))
        if not case_ids:
            return result
        writes, result.failed = self._decide(case_ids, now)
        if writes:
            try:
                result.appended = len(self.ledger.append_many(writes))
            except (ConcurrencyError, DuplicateEventIdError):     # a case moved, or another sweep got there
                for write in writes:
                    try:
                        result.appended += len(self.ledger.append(write.stream, write.events, write.expected_version))
                    except (ConcurrencyError, DuplicateEventIdError):
                        result.conflicts += 1
        if result.appended or result.conflicts:
            log.info("timer sweep: %d due, %d events, %d moved meanwhile", result.due, result.appended, result.conflicts)
        return result

    def _decide(self, case_ids: list[str], now: datetime) -> tuple[list[StreamWrite], int]:
        """The appends of a round, and how many cases could not be decided. One case the policy in force
        cannot place (a category or unit gone from a newer version) must not stop every other timer."""
        writes, failed = [], 0
        with read_transaction(self.ledger.engine) as conn:
            streams = read_due_streams(conn, [stream_of(c) for c in case_ids])
            loads: dict[str, dict] = {}
            policies: dict[str, object] = {}      # one policy lookup per county per round, not per case
            for case_id in case_ids:
                events = streams[stream_of(case_id)]
                case = fold(case_id, events, history=False)     # the timers never read the history
                if case.county and case.county not in policies:
                    policies[case.county] = policy_in_force(conn, case.county)
                policy = policies.get(case.county) if case.county else None
                if policy is None:
                    continue

                def load(county=case.county):
                    if county not in loads:
                        loads[county] = load_for(conn, county)
                    return loads[county]
                try:
                    steps = fire(policy, case, now, load)
                except (LookupError, ValueError) as exc:
                    failed += 1
                    log.error("timer sweep: case %s cannot be decided under %s policy version %s: %s",
                              case_id, case.county, policy.version, exc)
                    continue
                for step in steps:       # the next escalation in this round sees the cadre's new case
                    if step.type == "case.escalated":
                        counts = load()
                        counts[step.data["to_cadre"]] = counts.get(step.data["to_cadre"], 0) + 1
                if steps:
                    meta = Metadata(actor=ACTOR, county=case.county, correlation_id=case_id,
                                    causation_id=events[-1].event_id)
                    writes.append(StreamWrite(stream_of(case_id), [NewEvent(s.type, s.data, meta, event_id=s.event_id)
                                                                   for s in steps], case.version))
        return writes, failed
