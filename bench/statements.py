"""Where the database work of one report goes: statements and transactions per report, by query
(issue #16's "per-report cost": fewer transactions and statements per event).

`python -m bench.statements [--reports 200] [--rate 5]`; merged into bench/results.json under
`statements_per_report`.

Method
------
* The stack as bench.pipeline starts it (durable PostgreSQL 15, private RabbitMQ, `minqing run` in
  production shape), with PostgreSQL's own `pg_stat_statements` loaded (`track = all`, so statements
  inside the ledger's append function count too).
* Warm-up reports first; then the statistics are reset and `--reports` reports are sent at `--rate`
  per second (well below saturation: the figure is work per report, not a latency), and the stack is
  let settle until every reader is at the ledger's head, nothing is due and the counts stop moving.
* Counted: calls of every statement over the stack's database (per report), grouped by the
  statement's normalised text; transactions from pg_stat_database (commits + rollbacks); the ledger
  events written per report. Unlike CPU time, these counts do not depend on how busy the machine is.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text

from minqing import access
from minqing.db import make_engine
from minqing.shell.devstack import PostgreSQL, RabbitMQ
from bench.pipeline import Assignments, post_report, start_stack, stop_stack

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
WARMUP = 20
OWN = {"transactions": 0}       # this bench's own reads, left out of the transaction count


def _counts(engine) -> dict:
    OWN["transactions"] += 1
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.query, sum(s.calls)::bigint AS calls FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() GROUP BY s.query")).all()
        xacts = conn.execute(text("/* bench */ SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                  "WHERE datname = current_database()")).scalar()
        head = conn.execute(text("/* bench */ SELECT coalesce(max(position), 0) FROM ledger_events")).scalar()
    return {"statements": {q: int(c) for q, c in rows}, "transactions": int(xacts), "head": int(head)}


def _settled(engine, limit: float = 60.0) -> None:
    """Until every reader is at the head and the statement counts stop moving for 3 s."""
    deadline = time.monotonic() + limit
    last, still = None, time.monotonic()
    while time.monotonic() < deadline:
        OWN["transactions"] += 1
        with engine.connect() as conn:
            head = conn.execute(text("/* bench */ SELECT coalesce(max(position), 0) FROM ledger_events")).scalar()
            behind = conn.execute(text("/* bench */ SELECT count(*) FROM checkpoints WHERE position < :h"), {"h": head}).scalar()
            total = conn.execute(text("/* bench */ SELECT sum(calls) FROM pg_stat_statements")).scalar()
        now = (head, behind, total)
        if now != last:
            last, still = now, time.monotonic()
        elif behind == 0 and time.monotonic() - still >= 3:
            return
        time.sleep(0.5)


def _short(query: str) -> str:
    return " ".join(query.split())[:160]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.statements", description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    base_dir = ROOT / ".run" / "bench"
    base_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="statements-", dir=base_dir))
    pg = PostgreSQL(tmp / "pg", durable=True, settings={"shared_preload_libraries": "pg_stat_statements",
                                                          "pg_stat_statements.track": "all",
                                                          "pg_stat_statements.max": 5000})
    mq = RabbitMQ(tmp / "mq")
    proc = None
    started = datetime.now(timezone.utc)
    try:
        pg.start()
        mq.start()
        run_dir = tmp / "stack"
        run_dir.mkdir()
        assignments = Assignments(mq.uri)
        proc, database, port = start_stack(run_dir, pg, mq)
        engine = make_engine(database)
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        tokens = [access.issue_token(engine, "operator", "longjiang", label=f"bench-{i}")[1] for i in range(40)]
        base = f"http://127.0.0.1:{port}"
        for i in range(WARMUP):
            post_report(base, tokens[i % len(tokens)], -1 - i)
        _settled(engine)
        with engine.begin() as conn:
            conn.execute(text("/* bench */ SELECT pg_stat_statements_reset()"))
        before = _counts(engine)
        own_before = OWN["transactions"]
        began = time.monotonic()
        for i in range(args.reports):
            delay = began + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            status, _, _ = post_report(base, tokens[i % len(tokens)], i)
            if status != 201:
                raise RuntimeError(f"report {i}: HTTP {status}")
        _settled(engine)
        after = _counts(engine)
        own = OWN["transactions"] - own_before
        engine.dispose()
        assignments.close()
    finally:
        stop_stack(proc)
        mq.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    n = args.reports
    # reset just before `before`: `after` holds the window's calls; this bench's own reads left out
    calls = {q: c for q, c in after["statements"].items() if "/* bench */" not in q}
    total = sum(calls.values())
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:args.top]
    section = {
        "timestamp": started.isoformat(timespec="seconds"), "reports": n, "rate_per_s": args.rate,
        "events_per_report": round((after["head"] - before["head"]) / n, 2),
        "statements_per_report": round(total / n, 2),
        "transactions_per_report": round((after["transactions"] - before["transactions"] - own) / n, 2),
        "top_statements_per_report": [{"per_report": round(c / n, 2), "query": _short(q)} for q, c in top],
        "method": "pg_stat_statements (track=all) over the stack's database, reset after a warm-up; "
                  "pg_stat_database commits+rollbacks; the stack settled (every reader at the head, counts still 3 s) "
                  "before and after (see bench/statements.py)",
    }
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    report["statements_per_report"] = section
    tmp_out = RESULTS.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp_out, RESULTS)
    print(f"{n} reports at {args.rate:g}/s: {section['events_per_report']} events, {section['statements_per_report']} "
          f"statements, {section['transactions_per_report']} transactions per report")
    for row in section["top_statements_per_report"]:
        print(f"  {row['per_report']:7.2f}  {row['query']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
