"""What the whole stack costs when nothing happens (issue #16: "idle is idle", under 2% of one core).

`python -m bench.idle_stack` (part of `make bench`); merges its figures into bench/results.json under
`idle_stack`.

Method: a private durable PostgreSQL and RabbitMQ (minqing.shell.devstack) and `minqing run` on them, as
bench.pipeline starts it. After the stack reports it is running and SETTLE seconds more (start-up
catch-up, the first sweep), the CPU time (utime + stime from /proc/<pid>/stat, children reaped
included) of every process is read, again WINDOW seconds later, and the difference divided by the
wall time: per process, per group (Minqing's processes; PostgreSQL's server processes; RabbitMQ's
node), and in total. PostgreSQL's transactions in the window come from pg_stat_database.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from minqing.db import make_engine
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
WINDOW = float(os.environ.get("BENCH_IDLE_WINDOW", "30"))
SETTLE = float(os.environ.get("BENCH_IDLE_SETTLE", "15"))
BAR_PERCENT = 2.0
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, str, float] | None:
    """(parent pid, name, CPU seconds including reaped children) of a process, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is state; utime, stime, cutime, cstime are stat fields 14-17 (1-based)
    ppid = int(fields[1])
    cpu = sum(int(x) for x in fields[11:15]) / _TICK
    return ppid, name, cpu


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes() -> dict[int, tuple[int, str, float]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := _stat(int(entry))) is not None:
            out[int(entry)] = s
    return out


def tree(roots: set[int], table: dict[int, tuple[int, str, float]]) -> set[int]:
    """`roots` and every descendant."""
    found, grew = set(r for r in roots if r in table), True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def groups(stack_pid: int, pg_dir: Path, mq_dir: Path) -> dict[str, set[int]]:
    table = processes()
    postmaster = next((p for p in table if str(pg_dir) in _cmdline(p) and table[p][1] == "postgres"), -1)
    mq_roots = {p for p in table if str(mq_dir) in _cmdline(p)}
    return {"minqing": tree({stack_pid}, table), "postgresql": tree({postmaster}, table),
            "rabbitmq": tree(mq_roots, table)}


def _transactions(engine) -> int:
    with engine.connect() as conn:
        n = conn.execute(text("SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database")).scalar()
        conn.rollback()
    return int(n)


class Probe:
    """CPU seconds of every process of the stack and PostgreSQL's transaction count, read twice: what
    the stack spent in between, per process and per group (also used by bench.pipeline per report)."""

    def __init__(self, stack_pid: int, pg_dir: Path, mq_dir: Path, database: str):
        self.members = groups(stack_pid, pg_dir, mq_dir)
        self.engine = make_engine(database)

    def read(self) -> tuple[dict, float, int]:
        return processes(), time.perf_counter(), _transactions(self.engine)

    def spent(self, before: tuple[dict, float, int], after: tuple[dict, float, int]) -> dict:
        """{"seconds", "transactions", "groups": {group: {"cpu_s", "processes": {name: cpu_s}}}}"""
        (p0, t0, x0), (p1, t1, x1) = before, after
        out: dict = {"seconds": t1 - t0, "transactions": x1 - x0 - 1, "groups": {}}   # minus the read itself
        for group, pids in self.members.items():
            per: dict[str, float] = {}
            for pid in sorted(pids):
                if pid in p0 and pid in p1:
                    name = f"{pid} {p1[pid][1]} {' '.join(_cmdline(pid).split()[1:4])}".strip()[:80]
                    per[name] = p1[pid][2] - p0[pid][2]
            out["groups"][group] = {"cpu_s": sum(per.values()), "processes": per}
        return out

    def close(self) -> None:
        self.engine.dispose()


def measure(stack_pid: int, pg_dir: Path, mq_dir: Path, database: str, window: float = WINDOW) -> dict:
    probe = Probe(stack_pid, pg_dir, mq_dir, database)
    try:
        before = probe.read()
        time.sleep(window)
        spent = probe.spent(before, probe.read())
    finally:
        probe.close()
    wall = spent["seconds"]
    out: dict = {"window_s": round(wall, 1), "groups": {}}
    total = 0.0
    for group, g in spent["groups"].items():
        per = {name: round(cpu / wall * 1000, 2) for name, cpu in g["processes"].items()}
        group_ms = g["cpu_s"] / wall * 1000
        total += group_ms
        out["groups"][group] = {"cpu_ms_per_s": round(group_ms, 2), "percent_of_one_core": round(group_ms / 10, 2),
                                "processes": dict(sorted(per.items(), key=lambda kv: -kv[1]))}
    out["total_cpu_ms_per_s"] = round(total, 2)
    out["total_percent_of_one_core"] = round(total / 10, 2)
    out["postgresql_transactions_per_s"] = round(spent["transactions"] / wall, 2)
    return out


def main() -> int:
    from bench.pipeline import start_stack
    from minqing.shell.devstack import PostgreSQL, RabbitMQ
    base_dir = ROOT / ".run" / "bench"
    base_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="idle-", dir=base_dir))
    pg, mq = PostgreSQL(tmp / "pg", durable=True), RabbitMQ(tmp / "mq")
    proc = None
    started = datetime.now(timezone.utc)
    load_before = round(os.getloadavg()[0], 2)
    try:
        pg.start()
        mq.start()
        run_dir = tmp / "stack"
        run_dir.mkdir()
        proc, database, _port = start_stack(run_dir, pg, mq)
        time.sleep(SETTLE)
        section = measure(proc.pid, tmp / "pg", tmp / "mq", database)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except Exception:
                proc.kill()
        mq.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    section.update({"timestamp": started.isoformat(timespec="seconds"), "settle_s": SETTLE,
                    "load_average_1min_before": load_before,
                    "method": "utime+stime from /proc/<pid>/stat of every process of `minqing run`, of the "
                              "PostgreSQL server and of the RabbitMQ node, over the window, after the stack "
                              "started and settled with no traffic (bench/idle_stack.py)"})
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    report["idle_stack"] = section
    minqing_pct = section["groups"]["minqing"]["percent_of_one_core"]
    bars = [b for b in report.get("design_bars", []) if b.get("workload") not in ("idle_stack", "idle_stack.minqing")]
    bars.append({"bar": "idle stack (minqing run + PostgreSQL + RabbitMQ) under 2% of one core",
                 "at_most_percent": BAR_PERCENT, "workload": "idle_stack",
                 "measured_percent": section["total_percent_of_one_core"],
                 "met": section["total_percent_of_one_core"] < BAR_PERCENT})
    bars.append({"bar": "idle Minqing processes alone under 2% of one core", "at_most_percent": BAR_PERCENT,
                 "workload": "idle_stack.minqing", "measured_percent": minqing_pct, "met": minqing_pct < BAR_PERCENT})
    report["design_bars"] = bars
    out = RESULTS.with_suffix(".json.tmp")
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(out, RESULTS)
    for group, g in section["groups"].items():
        print(f"{group:10} {g['cpu_ms_per_s']:8.1f} ms CPU/s")
        for name, v in list(g["processes"].items())[:8]:
            print(f"    {v:8.1f}  {name}")
    print(f"total {section['total_cpu_ms_per_s']:.1f} ms CPU/s = {section['total_percent_of_one_core']}% of one core; "
          f"{section['postgresql_transactions_per_s']} PostgreSQL transactions/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
