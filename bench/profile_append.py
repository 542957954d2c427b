"""Where a single durable append on PostgreSQL spends its time: `python -m bench.profile_append`.

Starts a private durable PostgreSQL (as bench.run does), then
1. times the pieces of an append in isolation (contract validation, hash chain, a bare round trip,
   a bare durable commit), per call;
2. lists the round trips of one append, from a libpq protocol trace;
3. runs single-event appends (one writer), 100-event appends and a replay under cProfile and
   prints the cumulative time of the interesting functions per event, and the top functions by
   own time.
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

from psycopg import pq
from sqlalchemy import text

from bench.run import BATCH, EVENT_TYPE, METADATA, ROOT, MinqingTarget, event_data, new_case_id
from minqing import contract, ledger_group
from minqing.shell.devstack import PostgreSQL
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


def round_trips(url: str) -> None:
    """Trace the wire protocol (libpq trace) of one append. An append in a transaction of its own
    goes through the append pool beside the engine (minqing.ledger_group.append_engine), so that
    pool's connection is the one traced; a one-connection pool, warmed up so that psycopg has
    prepared its statements, makes sure the traced connection is the one used."""
    target = MinqingTarget("traced", url, pool_size=1)
    for _ in range(10):
        target.single_writer()()
    raw = ledger_group.append_engine(target.engine).raw_connection()
    try:
        pgconn = raw.driver_connection.pgconn
    finally:
        raw.close()
    trace = Path(tempfile.mkstemp(prefix="pqtrace-", dir=ROOT / ".run" / "bench")[1])
    with open(trace, "w") as f:
        pgconn.trace(f.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            target.single_writer()()
        finally:
            pgconn.untrace()
            target.close()
    sent = [line.split("\t") for line in trace.read_text().splitlines() if line.startswith("F")]
    trace.unlink()
    trips = [(m[3].strip() if m[2] == "Query" else "prepared statement") for m in sent if m[2] in ("Query", "Sync")]
    print(f"\nround trips of one single-event append (libpq trace): {len(trips)}: {trips}")


def profile(label: str, step, n: int, events_per_step: int) -> None:
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for _ in range(n):
        step()
    prof.disable()
    per_event = 1e6 / (n * events_per_step)
    stats = pstats.Stats(prof)
    cumulative: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        for name, (file_part, func_name) in WATCH.items():
            if file_part in filename and func == func_name:
                cumulative[name] = cumulative.get(name, 0.0) + ct
    print(f"\ncProfile, {label}: {(time.perf_counter() - t) * per_event:.1f} us per event wall time "
          "(profiler overhead included); cumulative us per event (overlapping):")
    for name in WATCH:
        if cumulative.get(name):
            print(f"  {cumulative[name] * per_event:9.1f}  {name}")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    print("  top functions by own time:\n" + "\n".join(out.getvalue().splitlines()[6:]).rstrip())


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
    "Ledger._already_recorded (idempotency SELECT)": ("minqing/ledger.py", "_already_recorded"),
    "Ledger._stream_version (SELECT max(version))": ("minqing/ledger.py", "_stream_version"),
    "_to_event (RecordedEvent from a row)": ("minqing/ledger.py", "_to_event"),
    "  json.loads": ("json/decoder.py", "decode"),
    "Ledger.read_all": ("minqing/ledger.py", "read_all"),
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
            round_trips(pg.url)
            profile("single-event appends, 1 writer", target.single_writer(), N, 1)
            profile("appends of 100 events (10 streams x 10)", target.batch_writer(), N // 40, BATCH)
            replay = lambda: sum(1 for _ in target.ledger.iter_all(batch=1000))  # noqa: E731
            profile(f"replay of {target.count()} events (iter_all)", replay, 1, target.count())
        finally:
            target.close()
        return 0
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
