"""Where a single durable append on PostgreSQL spends its time: `python -m bench.profile_append`.

Starts a private durable PostgreSQL (as bench.run does), then
1. times the pieces of an append in isolation (contract validation, hash chain, a bare round trip,
   a bare durable commit), per call;
2. counts the SQL round trips of one append (SQLAlchemy statements, plus pool pre-ping, BEGIN and
   COMMIT, which psycopg sends as separate queries);
3. runs N single-event appends (one writer) under cProfile and prints the cumulative time of the
   interesting functions per append, and the top functions by own time.
Prints only; changes nothing outside its temporary directory.
"""
from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, text

from bench.run import METADATA, ROOT, EVENT_TYPE, MinqingTarget, event_data, new_case_id
from minqing import contract
from minqing.devstack import PostgreSQL
from minqing.ledger import NewEvent, canonical_json, chain_hash
from minqing.personal_data import find_raw_personal_data

N = 2000


def per_call_us(fn, n: int = 2000) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def pieces(target: MinqingTarget) -> None:
    case_id = new_case_id()
    data = event_data(case_id)
    etype = contract.event_type(EVENT_TYPE)
    schema = etype.schema()
    rows = [
        ("NewEvent(...) incl. uuid4", lambda: NewEvent(EVENT_TYPE, data, METADATA)),
        ("contract.validate_event", lambda: contract.validate_event(EVENT_TYPE, data)),
        ("  of which: schema class instantiation", etype.schema),
        ("  of which: schema.validate (reused instance)", lambda: schema.validate(data)),
        ("  of which: personal-data regex scan", lambda: [find_raw_personal_data(v) for v in data.values()]),
        ("canonical_json(data)+canonical_json(metadata)",
         lambda: (canonical_json(data), canonical_json(METADATA.to_dict()))),
        ("chain_hash", lambda: chain_hash("0" * 64, 1, case_id, f"case-{case_id}", 1, EVENT_TYPE, 1,
                                          "{}", "{}", "2026-01-01T00:00:00.000000Z")),
    ]
    with target.engine.connect() as conn:
        conn.exec_driver_sql("CREATE TEMP TABLE t (x int)")
        conn.commit()
        raw = conn.connection.driver_connection
        raw.autocommit = True

        def commit_one():
            raw.execute("INSERT INTO t VALUES (1)")   # autocommit: one round trip, one WAL flush
        rows += [("bare round trip (SELECT 1, psycopg)", lambda: raw.execute("SELECT 1").fetchone()),
                 ("bare durable commit (INSERT, autocommit)", commit_one),
                 ("engine checkout + pre-ping + SELECT 1 + commit",
                  lambda: _engine_select(target.engine))]
        print("\nper call, in isolation (us):")
        for name, fn in rows:
            print(f"  {per_call_us(fn, 500 if 'commit' in name or 'trip' in name else 2000):9.1f}  {name}")
        raw.autocommit = False


def _engine_select(engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1")).scalar()
        conn.commit()


def round_trips(target: MinqingTarget) -> None:
    statements: list[str] = []
    listener = lambda conn, cursor, sql, params, context, many: statements.append(sql.split()[0])  # noqa: E731
    event.listen(target.engine, "before_cursor_execute", listener)
    try:
        target.single_writer()()
    finally:
        event.remove(target.engine, "before_cursor_execute", listener)
    print(f"\nSQL statements of one append via SQLAlchemy: {len(statements)} {statements}; plus the pool's "
          "pre-ping (SELECT 1), BEGIN and COMMIT: {} round trips in all".format(len(statements) + 3))


def profile(target: MinqingTarget) -> None:
    step = target.single_writer()
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for _ in range(N):
        step()
    prof.disable()
    wall = (time.perf_counter() - t) / N * 1e6
    stats = pstats.Stats(prof)
    cumulative: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        for label, (file_part, name) in WATCH.items():
            if file_part in filename and func == name:
                cumulative[label] = cumulative.get(label, 0.0) + ct
    print(f"\ncProfile of {N} appends, 1 writer: {wall:.0f} us per append wall time (profiler overhead included)")
    print("cumulative time per append (us), overlapping:")
    for label in WATCH:
        print(f"  {cumulative.get(label, 0.0) / N * 1e6:9.1f}  {label}")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
    print("\ntop functions by own time:\n" + "\n".join(out.getvalue().splitlines()[6:]))


WATCH = {   # label: (part of the file name, function name)
    "Ledger.append (everything)": ("minqing/ledger.py", "append_many"),
    "contract.validate_event": ("minqing/contract.py", "validate_event"),
    "  marshmallow Schema.__init__": ("marshmallow/schema.py", "__init__"),
    "  marshmallow Schema.validate": ("marshmallow/schema.py", "validate"),
    "  personal-data scan": ("minqing/contract.py", "_raw_personal_data"),
    "chain_hash": ("minqing/ledger.py", "chain_hash"),
    "pool checkout (incl. pre-ping)": ("sqlalchemy/pool/base.py", "_checkout"),
    "SQLAlchemy Connection.execute": ("sqlalchemy/engine/base.py", "execute"),
    "  psycopg Cursor.execute (driver + network + server)": ("psycopg/cursor.py", "execute"),
    "transaction commit (round trip + WAL flush)": ("psycopg/connection.py", "commit"),
    "_to_event (building the returned RecordedEvent)": ("minqing/ledger.py", "_to_event"),
}


def main() -> int:
    base = ROOT / ".run" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="profile-", dir=base))
    pg = PostgreSQL(tmp / "pg", durable=True)
    try:
        pg.start()
        target = MinqingTarget("minqing/postgresql", pg.url)
        try:
            for _ in range(200):                     # warm-up
                target.single_writer()()
            pieces(target)
            round_trips(target)
            profile(target)
        finally:
            target.close()
        return 0
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
