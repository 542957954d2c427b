"""Single-event appends from green threads, as a service's workers make them: `python -m bench.green_appends`
(part of `make bench`). Writes `green_appends` into bench/results.json.

bench.run's writers are OS threads, which share one interpreter lock: while one encodes an event the
others wait for the lock, not for the database. A nameko service runs its workers (up to 10,
`max_workers`) as eventlet green threads in one OS thread; a worker waiting for PostgreSQL yields to
the others, so they queue behind the append lock and group commit (minqing.ledger_group) sends them
together. This bench measures that: the same appends as bench.run's single_* workloads (one
`case.progress_noted` per call, 10 per stream) on a durable PostgreSQL, from 1, 4 and 10 green threads
of one monkey-patched process, with the commits they took. Each workload runs ROUNDS times; figures
are medians with their range. It is a figure beside bench.run's bar, not the bar's workload.
"""
import os

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")    # as minqing.shell.service_main sets it

import minqing  # noqa: E402,F401  (silences eventlet's deprecation notice first)
import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.run import RESULTS, ROOT, MinqingTarget  # noqa: E402
from minqing import ledger_group  # noqa: E402
from minqing.shell.devstack import PostgreSQL  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_REPEATS", "3"))
WRITERS = (1, 4, 10)


def workload(target: MinqingTarget, writers: int) -> dict:
    steps = [target.single_writer() for _ in range(writers)]
    counts = [0] * writers
    combiner = ledger_group.combiner(target.engine)
    before = combiner.calls
    deadline = time.perf_counter() + SECONDS

    def writer(i: int) -> None:
        while time.perf_counter() < deadline:
            counts[i] += steps[i]()

    t0 = time.perf_counter()
    pool = eventlet.GreenPool(writers)
    for i in range(writers):
        pool.spawn(writer, i)
    pool.waitall()
    elapsed = time.perf_counter() - t0
    commits = combiner.calls - before
    return {"appends": sum(counts), "commits": commits, "seconds": round(elapsed, 3),
            "events_per_s": round(sum(counts) / elapsed, 1),
            "appends_per_commit": round(sum(counts) / max(commits, 1), 2)}


def main() -> int:
    base = ROOT / ".run" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="green-", dir=base))
    pg = PostgreSQL(tmp / "pg", durable=True)
    load = round(os.getloadavg()[0], 2)
    rounds: dict[str, list[dict]] = {f"single_{w}g": [] for w in WRITERS}
    try:
        pg.start()
        target = MinqingTarget("minqing/postgresql", pg.url, pool_size=10)
        workload(target, 1)                                   # warm-up: connections, plans
        for _ in range(ROUNDS):
            for w in WRITERS:
                r = workload(target, w)
                rounds[f"single_{w}g"].append(r)
                print(f"   {w:2} green threads: {r['events_per_s']:>8,.0f} appends/s, "
                      f"{r['appends_per_commit']} per commit", flush=True)
        target.close()
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results = {}
    for name, runs in rounds.items():
        rates = sorted(r["events_per_s"] for r in runs)
        median = sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2]
        results[name] = {**median, "events_per_s_range": [rates[0], rates[-1]]}
    section = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "load_average_1min_at_start": load, "seconds_per_workload": SECONDS, "rounds": ROUNDS,
               "method": __doc__.split("\n\n")[1].replace("\n", " "), "results": results}
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    report["green_appends"] = section
    out = RESULTS.with_suffix(".json.tmp")
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(out, RESULTS)
    print("green threads: " + ", ".join(f"{k} {v['events_per_s']:,.0f}/s ({v['appends_per_commit']} per commit)"
                                        for k, v in results.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
