"""Ledger throughput: Minqing on PostgreSQL and SQLite, and the `eventsourcing` library on the same
PostgreSQL, in one run.  `python -m bench.run` (or `make bench`); writes bench/results.json.

Method
------
* A private, *durable* PostgreSQL 15 (fsync, synchronous_commit and full_page_writes on; see
  minqing.shell.devstack) is started in a temporary directory under .run/bench; a SQLite file in the same
  directory is opened with minqing.db's settings (WAL, synchronous=FULL, BEGIN IMMEDIATE).  Four
  targets then run the same workloads, taking turns: every workload BENCH_REPEATS (3) times, the
  targets in turn each time (A B C D A B C D ...), so a change in the machine's load falls on all of
  them alike; each figure is the median round, with its range, and the ratios to eventsourcing are
  also taken round by round (`ratio_minqing_over_eventsourcing_postgresql_paired_rounds`):

    minqing/postgresql        minqing.ledger.Ledger on database `minqing`
    minqing/sqlite            the same Ledger on the SQLite file
    eventsourcing/postgresql  eventsourcing's PostgresApplicationRecorder on database `es`

* Every event is `case.progress_noted` with the same data and metadata.  Minqing stores them as
  canonical JSON text; eventsourcing gets the canonical JSON of {"data", "metadata"} as its
  `state`, i.e. the same payload bytes (plus ~20 bytes of keys).
* Writers are threads; each writer owns its streams, so every append names the right expected
  version and nothing conflicts.  A writer appends EVENTS_PER_STREAM events to a stream (the first
  with expected version 0, a new stream), then moves on to a new stream.

    single_1w / single_4w   one event per append call, 1 or 4 writers; per-append latency kept.
                            Minqing's appends that wait for the lock together share one
                            transaction (group commit, minqing.ledger_group), each still decided on
                            its own; eventsourcing commits each append alone
    batch_1w  / batch_4w    100 events per transaction (10 new streams x 10 events)
    replay                  the store is first topped up with batches (untimed) to REPLAY_MIN
                            events, then read from the start in order, 1,000 per query
                            (Ledger.iter_all / select_notifications)

  Each write workload stops after SECONDS or MAX_EVENTS events, whichever comes first; events/s is
  the number of events appended divided by the wall time from the moment all writers start until
  the last one stops.  A short warm-up (not counted) precedes the first workload of each target.

* Then routing's timer sweep (bench/sweep.py, results under `sweep`): 1,000 due cases among
  MINQING_BENCH_SWEEP_OPEN (default 1,000,000) open ones, mostly bulk-loaded filler, on database
  `sweep` of the same PostgreSQL.

`--only ledger` or `--only sweep` runs one part and keeps the other part's figures from the
existing bench/results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Callable

try:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
except ImportError as exc:   # eventsourcing.postgres needs psycopg-pool (its "postgres" extra)
    sys.exit(f"bench.run needs eventsourcing's PostgreSQL recorder ({exc}); install psycopg-pool")

from bench import idle, limits, sweep
from minqing.db import make_engine, write_transaction
from minqing.shell.devstack import PostgreSQL
from minqing.ledger import NO_STREAM, Ledger, Metadata, NewEvent, StreamWrite, canonical_json, create_schema
from minqing.personal_data import find_raw_personal_data

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))   # time bound of each write workload
MAX_EVENTS = 100_000                                     # count bound of each write workload
REPLAY_MIN = int(os.environ.get("BENCH_REPLAY_MIN", "100000"))
REPLAY_MAX_SECONDS = 60.0
EVENTS_PER_STREAM = 10
BATCH_STREAMS, BATCH_PER_STREAM = 10, 10                 # 100 events per transaction
BATCH = BATCH_STREAMS * BATCH_PER_STREAM
READ_BATCH = 1000

EVENT_TYPE = "case.progress_noted"
METADATA = Metadata(actor="cadre:lj-c001", county="longjiang")


def event_data(case_id: str) -> dict:
    return {"case_id": case_id, "cadre": "lj-c001", "note": "已联系村民，正在协调"}


def new_case_id() -> str:
    """A uuid4 the contract accepts: about 1 in 900 uuid4 strings look like a raw phone number to
    minqing.personal_data (e.g. "...-b198-0221-6623...") and the ledger refuses the event."""
    while True:
        case_id = str(uuid.uuid4())
        if find_raw_personal_data(case_id) is None:
            return case_id


def streams():
    """Endless (case_id, expected_version) pairs: EVENTS_PER_STREAM appends per stream."""
    while True:
        case_id = new_case_id()
        for version in range(EVENTS_PER_STREAM):
            yield case_id, version


# ---- the targets ---------------------------------------------------------------------------------

class MinqingTarget:
    def __init__(self, name: str, url: str, pool_size: int = 5):
        self.name = name
        self.engine = make_engine(url, pool_size=pool_size)
        create_schema(self.engine)
        self.ledger = Ledger(self.engine)

    def single_writer(self) -> Callable[[], int]:
        cursor = streams()

        def step() -> int:
            case_id, expected = next(cursor)
            self.ledger.append(f"case-{case_id}", [NewEvent(EVENT_TYPE, event_data(case_id), METADATA)],
                               expected_version=expected)
            return 1
        return step

    def batch_writer(self) -> Callable[[], int]:
        def step() -> int:
            writes = []
            for _ in range(BATCH_STREAMS):
                case_id = new_case_id()
                events = [NewEvent(EVENT_TYPE, event_data(case_id), METADATA) for _ in range(BATCH_PER_STREAM)]
                writes.append(StreamWrite(f"case-{case_id}", events, NO_STREAM))
            self.ledger.append_many(writes)
            return BATCH
        return step

    def count(self) -> int:
        return self.ledger.head()[0]

    def commits(self) -> int | None:
        """Append calls sent to PostgreSQL so far (each one transaction, one WAL flush); None on SQLite."""
        if not self.ledger._postgres:
            return None
        from minqing import ledger_group
        return ledger_group.combiner(self.engine).calls

    def replay(self, deadline: float) -> int:
        n = 0
        for n, _event in enumerate(self.ledger.iter_all(batch=READ_BATCH), 1):
            if n % READ_BATCH == 0 and time.perf_counter() > deadline:
                break
        return n

    def close(self) -> None:
        self.engine.dispose()


class PortableLedger(Ledger):
    """The append as it was before minqing.ledger_pg: SQLAlchemy, statement by statement, in a
    transaction of its own (the path SQLite still takes) — the same-run "before" figure."""

    def _append(self, conn, writes):
        if conn is not None:
            return self._append_portable(conn, writes)
        with write_transaction(self.engine) as own:
            return self._append_portable(own, writes)


class PortableTarget(MinqingTarget):
    def __init__(self, name: str, url: str, pool_size: int = 5):
        super().__init__(name, url, pool_size)
        self.ledger = PortableLedger(self.engine)

    def commits(self) -> None:
        return None                   # one transaction per append: the path before group commit


class EventsourcingTarget:
    def __init__(self, name: str, pg: PostgreSQL, dbname: str):
        self.name = name
        pg.create_database(dbname, drop_existing=True)
        self.datastore = PostgresDatastore(dbname=dbname, host="127.0.0.1", port=pg.port, user="postgres",
                                           password="", pool_size=5, max_overflow=5)
        self.recorder = PostgresApplicationRecorder(self.datastore)
        self.recorder.create_table()

    def _stored(self, case_id: str, version: int):
        state = canonical_json({"data": event_data(case_id), "metadata": METADATA.to_dict()}).encode()
        return StoredEvent(originator_id=uuid.UUID(case_id), originator_version=version,
                                topic=EVENT_TYPE, state=state)

    def single_writer(self) -> Callable[[], int]:
        cursor = streams()

        def step() -> int:
            case_id, expected = next(cursor)
            self.recorder.insert_events([self._stored(case_id, expected + 1)])
            return 1
        return step

    def batch_writer(self) -> Callable[[], int]:
        def step() -> int:
            events = []
            for _ in range(BATCH_STREAMS):
                case_id = new_case_id()
                events += [self._stored(case_id, v) for v in range(1, BATCH_PER_STREAM + 1)]
            self.recorder.insert_events(events)
            return BATCH
        return step

    def count(self) -> int:
        return self.recorder.max_notification_id() or 0

    def replay(self, deadline: float) -> int:
        n, start = 0, 1
        while time.perf_counter() < deadline:
            page = self.recorder.select_notifications(start=start, limit=READ_BATCH)
            if not page:
                break
            n += len(page)
            start = page[-1].id + 1
        return n

    def close(self) -> None:
        self.datastore.close()


# ---- the harness ---------------------------------------------------------------------------------

def drive(make_step: Callable[[], Callable[[], int]], writers: int, seconds: float, max_events: int) -> dict:
    """Run `writers` threads, each calling its own step() until `seconds` pass or its share of
    `max_events` is appended; return events/s and per-step latency percentiles."""
    steps = [make_step() for _ in range(writers)]
    barrier = threading.Barrier(writers + 1)
    counts, latencies, errors = [0] * writers, [[] for _ in range(writers)], []

    def worker(i: int) -> None:
        barrier.wait()
        deadline, quota, lat = time.perf_counter() + seconds, max_events // writers, latencies[i]
        try:
            while counts[i] < quota and time.perf_counter() < deadline:
                t = time.perf_counter()
                counts[i] += steps[i]()
                lat.append(time.perf_counter() - t)
        except BaseException as exc:  # report, don't hang the others
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    lat = sorted(x for per in latencies for x in per)
    events = sum(counts)
    return {"writers": writers, "events": events, "appends": len(lat), "seconds": round(elapsed, 3),
            "events_per_s": round(events / elapsed, 1),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 3), "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 3)}


WORKLOADS = (("single_1w", "single_writer", 1), ("single_4w", "single_writer", 4),
             ("batch_1w", "batch_writer", 1), ("batch_4w", "batch_writer", 4))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))     # interleaved rounds of every workload


def run_interleaved(targets: list) -> tuple[dict, dict]:
    """Every workload REPEATS times, the targets taking turns (A B C D A B C D …), so that a change in
    the machine's load (other work on it) falls on every target alike; each figure is the median of its
    rounds, with its range, and the ratios to eventsourcing are taken round by round (paired)."""
    rounds: dict[str, dict[str, list[dict]]] = {t.name: {w: [] for w, _, _ in WORKLOADS} for t in targets}
    for target in targets:
        drive(target.single_writer, 1, 1.0, 50)                      # warm-up: connections, caches
    for w, maker, writers in WORKLOADS:
        for k in range(REPEATS):
            for target in targets:
                commits = getattr(target, "commits", lambda: None)
                before = commits()
                r = drive(getattr(target, maker), writers, SECONDS, MAX_EVENTS)
                if before is not None:        # Minqing on PostgreSQL: append calls sent (group commit)
                    r["commits"] = commits() - before
                    r["appends_per_commit"] = round(r["appends"] / max(r["commits"], 1), 2)
                rounds[target.name][w].append(r)
                print(f"   {target.name:36} {w:10} round {k + 1}: {r['events_per_s']:>10,.0f} ev/s   "
                      f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms", flush=True)
    results: dict = {}
    for target in targets:
        out = results[target.name] = {}
        for w, _, _ in WORKLOADS:
            runs = rounds[target.name][w]
            rates = sorted(r["events_per_s"] for r in runs)
            median = sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2]
            out[w] = {**median, "rounds": len(runs), "events_per_s_range": [rates[0], rates[-1]],
                      "events_per_s_rounds": [r["events_per_s"] for r in runs]}
    for target in targets:
        fill = target.batch_writer()
        t = time.perf_counter()
        while target.count() < REPLAY_MIN:
            fill()
        print(f"   {target.name}: filled to {target.count()} events in {time.perf_counter() - t:.1f}s", flush=True)
    replays: dict[str, list[float]] = {t.name: [] for t in targets}
    for k in range(REPEATS):
        for target in targets:
            t0 = time.perf_counter()
            n = target.replay(t0 + REPLAY_MAX_SECONDS)
            elapsed = time.perf_counter() - t0
            replays[target.name].append(n / elapsed)
            results[target.name]["replay"] = {"events": n, "of": target.count(), "seconds": round(elapsed, 3)}
            print(f"   {target.name:36} replay     round {k + 1}: {n / elapsed:>10,.0f} ev/s", flush=True)
    for name, rates in replays.items():
        results[name]["replay"].update({"events_per_s": round(sorted(rates)[len(rates) // 2], 1),
                                        "events_per_s_range": [round(min(rates), 1), round(max(rates), 1)],
                                        "events_per_s_rounds": [round(r, 1) for r in rates]})
    paired = {}
    mq, es = rounds.get("minqing/postgresql"), rounds.get("eventsourcing/postgresql")
    if mq and es:
        for w, _, _ in WORKLOADS:
            ratios = sorted(a["events_per_s"] / b["events_per_s"] for a, b in zip(mq[w], es[w]))
            paired[w] = {"median": round(ratios[len(ratios) // 2], 3), "min": round(ratios[0], 3),
                         "max": round(ratios[-1], 3)}
        ratios = sorted(a / b for a, b in zip(replays["minqing/postgresql"], replays["eventsourcing/postgresql"]))
        paired["replay"] = {"median": round(ratios[len(ratios) // 2], 3), "min": round(ratios[0], 3),
                            "max": round(ratios[-1], 3)}
    return results, paired


# ---- context -------------------------------------------------------------------------------------

def fdatasync_rate(directory: Path, seconds: float = 1.0) -> dict:
    """How many 8 KiB write+fdatasync cycles the benchmark's disk does per second (one writer):
    the ceiling for durable commits that are serialised, as both ledgers serialise appends."""
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        n, block, t0 = 0, b"\0" * 8192, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            n += 1
        return {"fdatasync_per_s": round(n / (time.perf_counter() - t0)), "file": str(directory)}
    finally:
        os.close(fd)
        path.unlink()


def machine_info(pg: PostgreSQL, tmp: Path) -> dict:
    settings = {s: pg.psql(f"SHOW {s}").strip() for s in
                ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "shared_buffers")}
    return {
        "cores": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
        "postgresql": pg.psql("SHOW server_version").strip(), "postgresql_settings": settings,
        "sqlite": sqlite3.sqlite_version, "sqlite_settings": {"journal_mode": "wal", "synchronous": "FULL"},
        "libraries": {d: dist_version(d) for d in ("sqlalchemy", "psycopg", "marshmallow", "eventsourcing")},
        "disk": fdatasync_rate(tmp),
    }


def payload_sizes() -> dict:
    data, meta = canonical_json(event_data(str(uuid.uuid4()))), canonical_json(METADATA.to_dict())
    state = canonical_json({"data": json.loads(data), "metadata": json.loads(meta)})
    return {"minqing_data_plus_metadata_bytes": len(data.encode()) + len(meta.encode()),
            "eventsourcing_state_bytes": len(state.encode())}


NOTES = [
    "Both ledgers serialise appends for a gap-free global order held until commit: Minqing with a "
    "row lock on ledger_head (SELECT ... FOR UPDATE, inside the stored function minqing_append), "
    "eventsourcing with LOCK TABLE ... IN EXCLUSIVE MODE. So every commit waits until the previous "
    "one has committed (WAL flushed). Minqing groups the appends that meet at the lock in one process "
    "(minqing.ledger_group: group commit): the writer that gets the lock next sends every append "
    "queued behind it in one call, each decided on its own, under one lock hold and one WAL flush. "
    "eventsourcing's recorder sends one transaction per append. With 4 writer threads that is the "
    "main difference in single_4w; with 1 writer there is nothing to group.",
    "Minqing validates every event against its contract and scans every string for raw personal data, "
    "computes a SHA-256 hash chain (in the function, under the lock), stores event id/type/schema "
    "version/timestamp/hash columns, checks idempotency by event id and each stream's version "
    "against the unique indexes. eventsourcing's recorder does none of that: it sends one pipelined "
    "LOCK + NOTIFY + INSERT ... unnest() per transaction and relies on the (originator_id, version) "
    "primary key for optimistic concurrency.",
    "Real eventsourcing applications also pay for their mapper (domain event -> JSON -> StoredEvent "
    "and back); here the recorder gets ready-made bytes, so its figures are an upper bound for it.",
    "Replay: Minqing's iter_all parses two JSON documents per event, upcasts, and builds RecordedEvent "
    "objects; select_notifications returns Notification objects with the state as raw bytes. Each "
    "store is read whole, so the stores differ in size (results.*.replay.events): the faster writer "
    "has more events by then; per-event read cost barely depends on the size at this scale.",
    "Payload: eventsourcing's state is the canonical JSON of {data, metadata}, the same bytes Minqing "
    "stores in its data and metadata columns (see payload).",
    "SQLite: writers are threads of one process. Python's sqlite3 releases the GIL while SQLite runs, "
    "but a writer that finds the database locked waits in SQLite's busy handler, which sleeps "
    "1, 2, 5, 10 ... ms, so single_4w/batch_4w on SQLite mostly measure lock hand-over with sleeps, "
    "much as separate processes would see; there is no eventsourcing SQLite figure to compare with.",
    "The targets take turns, workload by workload (BENCH_REPEATS rounds each), on one 2-core machine, "
    "the PostgreSQL server sharing the cores with the client and with whatever else runs there "
    "(load_average_1min_at_start); a checkpoint or autovacuum may fall into any round. Quote the "
    "paired ratios and the ranges (events_per_s_range), not one absolute figure.",
]


def comparisons(results: dict) -> dict:
    mq, es = results["minqing/postgresql"], results["eventsourcing/postgresql"]
    return {w: round(mq[w]["events_per_s"] / es[w]["events_per_s"], 3) for w in mq}


def before_after(results: dict) -> dict:
    """minqing/postgresql (stored function) over the portable path it replaced, same run."""
    new, old = results["minqing/postgresql"], results.get("minqing/postgresql-portable-before")
    return {w: round(new[w]["events_per_s"] / old[w]["events_per_s"], 3) for w in new} if old else {}


def _guarded(fn) -> dict:
    """A side measurement that fails is recorded as its error; the ledger figures are still written."""
    try:
        return fn()
    except Exception as exc:       # noqa: BLE001 - reported in results.json
        print(f"   failed: {type(exc).__name__}: {exc}", flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"}


def fractions(results: dict, lim: dict) -> dict:
    """Each PostgreSQL write figure as a fraction of the same-run limit it is comparable with."""
    out: dict = {}
    if "copy_rows_per_s" not in lim:
        return out
    for w, key in (("single_1w", "pgbench_insert_1_row_1c_rows_per_s"), ("single_4w", "pgbench_insert_1_row_4c_rows_per_s"),
                   ("batch_1w", "pgbench_insert_100_rows_1c_rows_per_s"), ("batch_4w", "pgbench_insert_100_rows_4c_rows_per_s")):
        if lim.get(key):
            for target in ("minqing/postgresql", "eventsourcing/postgresql"):
                out.setdefault(target, {})[f"{w} / {key}"] = round(results[target][w]["events_per_s"] / lim[key], 3)
    for target in ("minqing/postgresql", "eventsourcing/postgresql"):
        best = max(results[target]["batch_1w"]["events_per_s"], results[target]["batch_4w"]["events_per_s"])
        out.setdefault(target, {})["best batch / copy_rows_per_s"] = round(best / lim["copy_rows_per_s"], 3)
    return out


def design_bars(results: dict | None, sweep_section: dict | None = None) -> list[dict]:
    out = ledger_bars(results) if results else []
    return out + (sweep.bars(sweep_section) if sweep_section and "sweep_rounds" in sweep_section else [])


def ledger_bars(results: dict) -> list[dict]:
    pg = results["minqing/postgresql"]
    best_batch = max(("batch_1w", "batch_4w"), key=lambda w: pg[w]["events_per_s"])
    bars = [("durable single-event appends with 4 writers on PostgreSQL", 2000, "single_4w"),
            ("events/s appended in batches of 100 on PostgreSQL (best of 1 and 4 writers)", 30000, best_batch),
            ("replay (iter_all) on PostgreSQL", 50000, "replay")]
    out = [{"bar": text, "at_least_per_s": target, "workload": w, "measured_per_s": pg[w]["events_per_s"],
            "met": pg[w]["events_per_s"] >= target} for text, target, w in bars]
    es = results.get("eventsourcing/postgresql")
    if es:
        a, b = pg["single_4w"].get("events_per_s_rounds"), es["single_4w"].get("events_per_s_rounds")
        if a and b and len(a) == len(b):      # paired rounds: the median of the round-by-round ratios
            ratio = sorted(x / y for x, y in zip(a, b))[len(a) // 2]
        else:
            ratio = pg["single_4w"]["events_per_s"] / es["single_4w"]["events_per_s"]
        out.append({"bar": "single-event appends with 4 writers >= 1.5x eventsourcing (same run)", "at_least_ratio": 1.5,
                    "workload": "single_4w", "measured_ratio": round(ratio, 3), "met": ratio >= 1.5})
    return out


def print_bars(bars: list[dict]) -> None:
    print("\nDESIGN bars:")
    for b in bars:
        if "at_least_ratio" in b:
            print(f"  {'MET ' if b['met'] else 'MISS'}  {b['bar']}: measured {b['measured_ratio']}x")
        elif "at_most_ms" in b:
            where = f" at {b['open_cases']:,} open" if "open_cases" in b else ""
            print(f"  {'MET ' if b['met'] else 'MISS'}  {b['bar']}: <= {b['at_most_ms']:,.0f} ms, "
                  f"measured {b['measured_ms'] if b['measured_ms'] is not None else float('nan'):,.1f} ms{where} ({b['workload']})")
        elif "at_most_percent" in b:     # kept from bench.idle_stack
            print(f"  {'MET ' if b['met'] else 'MISS'}  {b['bar']}: <= {b['at_most_percent']}%, "
                  f"measured {b['measured_percent']}% ({b['workload']})")
        else:
            print(f"  {'MET ' if b['met'] else 'MISS'}  {b['bar']}: >= {b['at_least_per_s']:,}/s, "
                  f"measured {b['measured_per_s']:,.0f}/s ({b['workload']}, minqing/postgresql)")


def print_table(results: dict, ratios: dict) -> None:
    names = list(results)
    print("\nevents/s (single-event workloads: p50/p99 ms per append)\n")
    print(f"{'workload':11}" + "".join(f"{n:>30}" for n in names) + f"{'minqing/es (pg)':>17}")
    for w in results[names[0]]:
        cells = []
        for n in names:
            r = results[n][w]
            lat = f" ({r['p50_ms']:.1f}/{r['p99_ms']:.1f})" if w.startswith("single") else ""
            cells.append(f"{r['events_per_s']:,.0f}{lat}")
        print(f"{w:11}" + "".join(f"{c:>30}" for c in cells) + f"{ratios[w]:>17.2f}")


def previous_report() -> dict:
    try:
        return json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return {}


OUTSIDE_MAKE_BENCH = ("intake_load", "simulate_month")    # results.json sections of benches run by hand


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description="Ledger throughput and routing's timer sweep; writes bench/results.json.")
    parser.add_argument("--only", choices=("ledger", "sweep"),
                        help="run one part; the other part's figures are kept from bench/results.json")
    args = parser.parse_args(argv)
    base = ROOT / ".run" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    pg = PostgreSQL(tmp / "pg", durable=True)
    started = datetime.now(timezone.utc)
    load_at_start = round(os.getloadavg()[0], 2)      # other work on the machine skews every figure
    old = previous_report() if args.only else {}
    try:
        pg.start()
        machine = machine_info(pg, tmp)
        print(f"PostgreSQL {machine['postgresql']} at {pg.url}; SQLite {machine['sqlite']} in {tmp}; "
              f"disk {machine['disk']['fdatasync_per_s']} fdatasync/s", flush=True)
        report: dict = {}
        if args.only != "sweep":
            targets = [MinqingTarget("minqing/postgresql", pg.url),
                       MinqingTarget("minqing/sqlite", f"sqlite:///{tmp / 'ledger.sqlite'}"),
                       PortableTarget("minqing/postgresql-portable-before", pg.create_database("before", drop_existing=True)),
                       EventsourcingTarget("eventsourcing/postgresql", pg, "es")]
            print(f"\n== ledger workloads: {REPEATS} interleaved rounds of {SECONDS:g} s", flush=True)
            try:
                results, paired = run_interleaved(targets)
            finally:
                for target in targets:
                    target.close()
            print("\n== machine limits (pgbench, COPY)", flush=True)
            machine_limits = _guarded(lambda: limits.run(pg, SECONDS))
            if "error" not in machine_limits:
                machine_limits.update(_guarded(lambda: limits.broker_run(tmp, SECONDS)))
            print("\n== idle relay", flush=True)
            idle_section = _guarded(lambda: idle.run(pg, tmp))
            report = {
                "timestamp": started.isoformat(timespec="seconds"),
                "duration_s": None,
                "machine": machine,
                "method": {"seconds_per_workload": SECONDS, "max_events_per_workload": MAX_EVENTS,
                           "batch_size": BATCH, "batch_shape": f"{BATCH_STREAMS} new streams x {BATCH_PER_STREAM} events",
                           "events_per_stream_single": EVENTS_PER_STREAM, "replay_min_events": REPLAY_MIN,
                           "replay_read_batch": READ_BATCH, "event_type": EVENT_TYPE, "payload": payload_sizes()},
                "results": results,
                "ratio_minqing_over_eventsourcing_postgresql": comparisons(results),
                "ratio_minqing_over_eventsourcing_postgresql_paired_rounds": paired,
                "load_average_1min_at_start": load_at_start,
                "ratio_stored_function_over_portable_path_postgresql": before_after(results),
                "limits": machine_limits,
                "fraction_of_limit": fractions(results, machine_limits),
                "idle": idle_section,
            }
        else:
            report = {k: v for k, v in old.items() if k not in ("sweep", "design_bars", "notes")}
        if args.only != "ledger":
            section = _guarded(lambda: sweep.run(pg))
            if args.only == "sweep":
                section["machine"] = machine     # the top-level machine is the ledger run's
            if "sweep_rounds" in section:
                section["notes"] = _guarded(lambda: sweep.notes(section))
        else:
            section = old.get("sweep")
        if section:
            report["sweep"] = section
        if args.only != "sweep":
            report["duration_s"] = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
        report["design_bars"] = design_bars(report.get("results"), section)
        if args.only:
            # the other benches' sections (bench.assessment, bench.pipeline, bench.idle_stack, …) and
            # their bars stay as they were: a partial run rewrites only its own part
            for key, value in old.items():
                report.setdefault(key, value)
            mine = {b["workload"] for b in report["design_bars"]}
            report["design_bars"] += [b for b in old.get("design_bars", [])
                                      if b.get("workload") not in mine and not str(b.get("workload", "")).startswith("sweep")
                                      and b.get("workload") not in ("single_4w", "batch_1w", "batch_4w", "replay")]
        else:
            # a whole run starts afresh, which make bench's later modules fill in again; the benches
            # make bench does not run (python -m bench.intake_load, bench.simulate_month) keep theirs
            kept = previous_report()
            for key in OUTSIDE_MAKE_BENCH:
                if key in kept:
                    report.setdefault(key, kept[key])
        report["notes"] = NOTES
        tmp_out = RESULTS.with_suffix(".json.tmp")
        tmp_out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp_out, RESULTS)
        if report.get("results"):
            print_table(report["results"], report["ratio_minqing_over_eventsourcing_postgresql"])
        print_bars(report["design_bars"])
        total = (datetime.now(timezone.utc) - started).total_seconds()
        print(f"\nwritten {RESULTS.relative_to(ROOT)} in {total:.0f}s")
        return 0
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
