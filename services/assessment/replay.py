"""The assessment projection's rebuild path (`minqing consumer rebuild assessment.facts`, issue #16).

The same `Attribution` pass as the live projection (projection.py), so the same facts row for row
(tests/interface/test_assessment_rebuild_equality.py), with what a rebuild can afford that a live
batch cannot (minqing.replay: its tables were just emptied, its service is stopped):

- it keeps what it learnt between batches instead of reading it back: the case states (the most
  recently changed `STATES_KEPT`; an older one is read back from the table when its case comes
  back), the county zones and policies, the visit days;
- `prepare` (attribution, in the replay's main thread) needs no database, so it runs while the
  writer thread's `write` has PostgreSQL take in the previous batch: the facts by one binary COPY,
  the changed case states by one INSERT … ON CONFLICT over two arrays, the new visit days by one
  INSERT over three arrays, a policy or rules publication as the live projection writes it.

PostgreSQL only (consumer.rebuild uses it there; elsewhere the follower rebuilds).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from services.assessment.attribution import CaseState
from services.assessment.projection import (CASE_EVENTS, FACT_COLUMNS, AssessmentFacts, Attribution, load_counties,
                                            load_states, state_json)
from services.assessment.tables import cases_table, facts_table, visit_days_table

STATES_KEPT = 200_000       # case states kept between batches (well under 1 KB each)

_FACT_TYPES = ["bigint", "varchar", "varchar", "varchar", "varchar", "varchar", "float8", "varchar", "varchar"]
_COPY_FACTS = f"COPY {facts_table.name} ({', '.join(FACT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_UPSERT_STATES = (f"INSERT INTO {cases_table.name} (case_id, state) SELECT * FROM unnest(%b::varchar[], %b::text[]) "
                  "ON CONFLICT (case_id) DO UPDATE SET state = EXCLUDED.state")
_INSERT_VISIT_DAYS = (f"INSERT INTO {visit_days_table.name} (county, cadre, day) "
                      "SELECT * FROM unnest(%b::varchar[], %b::varchar[], %b::varchar[])")


@dataclass
class Job:
    """One batch, attributed: what the writer writes in one transaction."""
    rows: list[tuple]
    states: list[tuple[str, str]]                   # (case_id, state JSON)
    visit_days: list[tuple[str, str, str]]
    configuration: list = field(default_factory=list)   # policy and rules publications, in order


class AssessmentReplay:
    def __init__(self):
        self.states: dict[str, CaseState] = {}
        self.counties: tuple[dict, dict] | None = None
        self.visit_days: set[tuple[str, str, str]] = set()
        self.stored = False          # may the table hold a state this replay does not keep? (then read misses)
        self.pending: list[set[str]] = []     # the cases of batches not committed yet (never forgotten)
        self._lock = threading.Lock()

    def prepare(self, engine, events: list) -> Job:
        states = self.states
        if self.counties is None:          # what the tables hold when the replay starts (empty after a drop)
            with engine.connect() as conn:
                self.counties = load_counties(conn)
                self.visit_days = {tuple(r) for r in conn.execute(select(
                    visit_days_table.c.county, visit_days_table.c.cadre, visit_days_table.c.day))}
                self.stored = conn.execute(select(func.count()).select_from(cases_table)).scalar_one() > 0
        if self.stored:
            missing = list({e.data["case_id"] for e in events if e.type in CASE_EVENTS} - states.keys())
            if missing:
                with engine.connect() as conn:
                    load_states(conn, missing, states)
        job = Job([], [], [])

        def first_visit(conn, key: dict) -> bool:
            day = (key["county"], key["cadre"], key["day"])
            if day in self.visit_days:
                return False
            self.visit_days.add(day)
            job.visit_days.append(day)
            return True

        run = Attribution(states, *self.counties, first_visit, lambda conn, event: job.configuration.append(event))
        for event in events:
            run.apply(None, event)
        job.rows = run.rows
        job.states = [(c, state_json(states[c])) for c in run.changed]
        with self._lock:
            self.pending.append(run.changed)
        self._keep_recent(run.changed)
        return job

    def write(self, conn: Connection, job: Job) -> None:
        for event in job.configuration:
            AssessmentFacts._configuration(conn, event)
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            if job.rows:
                with cursor.copy(_COPY_FACTS) as copy:
                    copy.set_types(_FACT_TYPES)
                    for row in job.rows:
                        copy.write_row(row)
            if job.states:
                cursor.execute(_UPSERT_STATES, tuple(map(list, zip(*job.states))))
            if job.visit_days:
                cursor.execute(_INSERT_VISIT_DAYS, tuple(map(list, zip(*job.visit_days))))
        finally:
            cursor.close()

    def committed(self, job: Job) -> None:
        with self._lock:
            self.pending.pop(0)

    def _keep_recent(self, changed: set[str]) -> None:
        """Move the cases just changed to the young end; forget the oldest beyond STATES_KEPT, except
        those a batch not yet committed changed (a forgotten state is read back from the table)."""
        states = self.states
        for case_id in changed:
            states[case_id] = states.pop(case_id)
        excess = len(states) - STATES_KEPT
        if excess <= 0:
            return
        with self._lock:
            unwritten = set().union(*self.pending)
        for case_id in [c for c in list(states)[:excess] if c not in unwritten]:
            del states[case_id]
        self.stored = True
