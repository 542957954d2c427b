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
        self.stored = False          # did the table hold states when the replay began? (then read every miss)
        self.forgotten: set[str] = set()      # cases whose state was let go: read back when they come back
        self.indexes: list[str] = []          # statements that build the facts' indexes again

    def prepare(self, events: list, read) -> Job:
        states = self.states
        if self.counties is None:          # what the tables hold when the replay starts (empty after a drop)
            self.counties, self.visit_days, self.stored = read(_starting_point)
        wanted = {e.data["case_id"] for e in events if e.type in CASE_EVENTS} - states.keys()
        missing = list(wanted if self.stored else wanted & self.forgotten)
        if missing:
            states.update(read(lambda conn: _states(conn, missing)))
            self.forgotten.difference_update(missing)
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
        self._keep_recent(run.changed)
        return job

    def begin(self, conn: Connection) -> None:
        """Drop the facts' primary key and indexes for the replay (PostgreSQL builds them again in
        `end`, from the sorted rows, several times cheaper than keeping them up row by row). In the
        replay's one transaction: if it is lost, so is the drop."""
        table = facts_table.name
        for name, definition in conn.exec_driver_sql(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %(t)s::regclass AND contype IN ('p', 'u')", {"t": table}).all():
            conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            self.indexes.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for name, definition in conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %(t)s "
                "AND schemaname = current_schema()", {"t": table}).all():
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
            self.indexes.append(definition)

    def end(self, conn: Connection) -> None:
        for statement in self.indexes:
            conn.exec_driver_sql(statement)
        self.indexes = []

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

    def _keep_recent(self, changed: set[str]) -> None:
        """Move the cases just changed to the young end; let the oldest beyond STATES_KEPT go (their
        states are written: a batch is read back only after the batches before it are written)."""
        states = self.states
        for case_id in changed:
            states[case_id] = states.pop(case_id)
        excess = len(states) - STATES_KEPT
        if excess > 0:
            for case_id in list(states)[:excess]:
                del states[case_id]
                self.forgotten.add(case_id)


def _starting_point(conn: Connection):
    visit_days = {tuple(r) for r in conn.execute(select(
        visit_days_table.c.county, visit_days_table.c.cadre, visit_days_table.c.day))}
    stored = conn.execute(select(func.count()).select_from(cases_table)).scalar_one() > 0
    return load_counties(conn), visit_days, stored


def _states(conn: Connection, case_ids: list[str]) -> dict[str, CaseState]:
    out: dict[str, CaseState] = {}
    load_states(conn, case_ids, out)
    return out
