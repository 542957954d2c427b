"""Report → assignment latency on the whole stack (DESIGN §6: p99 ≤ 150 ms at 50 reports/s sustained).

`python -m bench.pipeline` (part of `make bench`); merges its figures into bench/results.json under
`pipeline` and adds its design bar (workload `pipeline`). `make bench` runs it after bench.run, which
rewrites the file.

Method
------
* A private *durable* PostgreSQL 15 and a private RabbitMQ node (minqing.shell.devstack), and the whole
  stack as `minqing run` would run it in production shape: gateway, intake, routing, notify,
  assessment and the relay, each its own process, on the demo counties' policies.
* A queue bound to `minqing.events` for `longjiang.case.assigned` *before* the load starts; a
  thread consumes it and notes when each case's assignment arrives.
* Open-loop load: report i is sent at start + i / RATE whatever happened to the earlier ones, by a
  pool of client threads, each report through the gateway (`POST /api/v1/cases`) with one of 40
  operator tokens (a report desk of many operators; each token's rate limit is 2/s). Reporters,
  places and categories vary, so no report is merged as a duplicate.
* Latency of a report: from the moment its POST starts to the moment its `case.assigned` message
  is received from the broker — registration, the ledger append, the relay's publish, routing's
  decision and append, and the relay's second publish. Also the POST's own response time.
* Warm-up reports (not counted) first; then RATE reports/s for SECONDS; a report whose assignment
  has not arrived 30 s after the load ends counts as missing.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from cryptography.fernet import Fernet
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import kombu

from minqing import access, cloudevents  # noqa: F401  (cloudevents registers its serializer)
from minqing.db import make_engine
from minqing.shell.devstack import PostgreSQL, RabbitMQ, free_port_block
from minqing.relay import declare_topology
from bench.idle_stack import Probe

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
RATE = float(os.environ.get("BENCH_PIPELINE_RATE", "50"))
LOW_RATE = float(os.environ.get("BENCH_PIPELINE_LOW_RATE", "15"))   # a second run at a rate this machine sustains
SECONDS = float(os.environ.get("BENCH_PIPELINE_SECONDS", "30"))
WARMUP = 40
TOKENS = 40
BAR_P99_MS = 150.0
PLACES = [("heigang", "heigang.kaoshan", "heigang.kaoshan.11"), ("heigang", "heigang.kaoshan", "heigang.kaoshan.3"),
          ("shanquan", "shanquan.pingan", "shanquan.pingan.1"), ("shanquan", "shanquan.pingan", "shanquan.pingan.2"),
          ("longjiang-zhen", "longjiang-zhen.dongsheng", None), ("qikeshu", "qikeshu.qikeshu", "qikeshu.qikeshu.1")]
NOTES = [
    "Everything shares the machine's 2 cores: PostgreSQL, RabbitMQ, the gateway, four services, the relay "
    "and this load generator. The stack's capacity here is bounded by CPU, not by a lock: measured with "
    "/proc CPU times at 20 reports/s, one report costs about 95 ms of CPU in all (intake ~20, notify ~21 "
    "for its receipt and assignment notifications and their notification.sent records, routing ~16, "
    "PostgreSQL ~14, relay ~10, assessment ~6, RabbitMQ ~6). So about 20-30 reports/s is what this "
    "machine sustains; above that the POST queue grows and latency is queueing, which is what the 50/s "
    "figure shows. `at_low_rate` is the latency below saturation.",
    "A county sees 100-300 reports a day (DESIGN §6), well under 1 per second; the 50/s bar is a burst "
    "target that needs more cores or a leaner path (fewer transactions per notification, relay woken by "
    "LISTEN/NOTIFY instead of polling every 20 ms).",
]
CATEGORIES = ["101", "201", "202", "301", "302", "401", "901"]


class Assignments:
    """Receives `case.assigned` from the broker in a thread; `arrived[case_id]` = monotonic time."""

    def __init__(self, amqp_uri: str):
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        self.conn = kombu.Connection(amqp_uri, connect_timeout=10)
        channel = self.conn.channel()
        exchange = declare_topology(channel)
        self.queue = kombu.Queue(f"bench.pipeline.{os.getpid()}", exchange=exchange,
                                 routing_key="longjiang.case.assigned", durable=False, auto_delete=True)
        self.consumer = kombu.Consumer(channel, queues=[self.queue], callbacks=[self._on], accept=["cloudevents", "json"])
        self.consumer.consume()
        self.running = True
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _on(self, body, message):
        at = time.monotonic()
        with self.lock:
            self.arrived.setdefault(body["subject"], at)
        message.ack()

    def _drain(self):
        while self.running:
            try:
                self.conn.drain_events(timeout=0.2)
            except TimeoutError:
                continue
            except OSError:
                if self.running:
                    raise

    def close(self):
        self.running = False
        self.thread.join(2)
        self.conn.release()


def post_report(base: str, token: str, i: int) -> tuple[int, str | None, float]:
    township, village, hamlet = random.choice(PLACES)
    body = {"county": "longjiang", "channel": "hotline", "category": random.choice(CATEGORIES),
            "summary": f"压测诉求 #{i}：道路坑洼需要修补", "location": {"township": township, "village": village,
                                                                 "hamlet": hamlet},
            "reporter": {"name": "测试", "phone": f"135{random.randrange(10**8):08d}"}}
    request = urllib.request.Request(f"{base}/api/v1/cases", data=json.dumps(body, ensure_ascii=False).encode(),
                                     method="POST", headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {token}"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = json.loads(resp.read())
            return resp.status, answer.get("case_id"), started
    except urllib.error.HTTPError as err:
        return err.code, None, started


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(samples_s: list[float]) -> dict:
    ms = [s * 1000 for s in samples_s]
    return {"n": len(ms), **{f"p{q}_ms": round(percentile(ms, q), 1) if ms else None for q in (50, 90, 95, 99)},
            "max_ms": round(max(ms), 1) if ms else None}


def start_stack(run_dir: Path, pg: PostgreSQL, mq: RabbitMQ) -> tuple[subprocess.Popen, str, int]:
    database = pg.create_database("pipeline", drop_existing=True)
    port = free_port_block(6)
    env = {**os.environ, "MINQING_RUN_DIR": str(run_dir), "MINQING_DATABASE_URL": database,
           "MINQING_AMQP_URI": mq.uri, "MINQING_HTTP_PORT": str(port), "MINQING_LOG_LEVEL": "WARNING",
           "MINQING_VAULT_KEY": Fernet.generate_key().decode()}
    out = open(run_dir / "run.out", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "minqing.shell.cli", "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while b"Minqing is running" not in (run_dir / "run.out").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the stack did not start: " + (run_dir / "run.out").read_text()[-2000:])
        time.sleep(0.3)
    return proc, database, port


def stop_stack(proc: subprocess.Popen | None) -> None:
    """Stop `minqing run` (SIGTERM, then SIGKILL after 60 s): the benches that start a stack share it."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_load(base: str, tokens: list[str], assignments: Assignments, rate: float, probe=None) -> dict:
    for i in range(WARMUP):
        post_report(base, tokens[i % len(tokens)], -i)
    time.sleep(2)
    before = probe.read() if probe is not None else None
    total = int(rate * SECONDS)
    sent: dict[str, float] = {}
    responses: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    begin = time.monotonic() + 0.5

    def one(i: int):
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        status, case_id, started = post_report(base, tokens[i % len(tokens)], i)
        done = time.monotonic()
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            responses.append(done - started)
            if case_id:
                sent[case_id] = started

    with ThreadPoolExecutor(max_workers=48) as pool:
        list(pool.map(one, range(total)))
    load_seconds = time.monotonic() - begin
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with assignments.lock:
            if all(c in assignments.arrived for c in sent):
                break
        time.sleep(0.2)
    with assignments.lock:
        latencies = [assignments.arrived[c] - t for c, t in sent.items() if c in assignments.arrived]
        missing = sum(1 for c in sent if c not in assignments.arrived)
    out = {"reports": total, "rate_per_s_target": rate, "rate_per_s_achieved": round(total / load_seconds, 1),
           "seconds": round(load_seconds, 1), "http_statuses": {str(k): v for k, v in sorted(statuses.items())},
           "report_to_assignment": summary(latencies), "post_response": summary(responses),
           "assignments_missing": missing}
    if probe is not None:
        time.sleep(3)        # the last reports' notifications, relay publishes and follower rounds
        out["cost_per_report"] = per_report(probe.spent(before, probe.read()), total)
    return out


def per_report(spent: dict, reports: int) -> dict:
    """CPU ms per report of every process of the stack (from the warm-up's end until every assignment
    arrived, plus 3 s), by group, and PostgreSQL transactions per report; idle cost included."""
    groups = {}
    for group, g in spent["groups"].items():
        groups[group] = {"cpu_ms_per_report": round(g["cpu_s"] * 1000 / reports, 2),
                         "processes": {name: round(cpu * 1000 / reports, 2) for name, cpu in
                                       sorted(g["processes"].items(), key=lambda kv: -kv[1]) if cpu > 0}}
    return {"window_s": round(spent["seconds"], 1), "reports": reports,
            "cpu_ms_per_report_total": round(sum(g["cpu_s"] for g in spent["groups"].values()) * 1000 / reports, 2),
            "transactions_per_report": round(spent["transactions"] / reports, 2), "groups": groups,
            "measured": "utime+stime from /proc/<pid>/stat (bench/idle_stack.Probe); transactions: "
                        "xact_commit+xact_rollback of pg_stat_database, every database"}


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0]).parse_args(argv)
    base_dir = ROOT / ".run" / "bench"
    base_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pipeline-", dir=base_dir))
    pg, mq = PostgreSQL(tmp / "pg", durable=True), RabbitMQ(tmp / "mq")
    proc = None
    started = datetime.now(timezone.utc)
    load_before = round(os.getloadavg()[0], 2)     # other work on the machine skews every figure
    try:
        pg.start()
        mq.start()
        run_dir = tmp / "stack"
        run_dir.mkdir()
        assignments = Assignments(mq.uri)
        proc, database, port = start_stack(run_dir, pg, mq)
        engine = make_engine(database)
        tokens = [access.issue_token(engine, "operator", "longjiang", label=f"bench-{i}")[1] for i in range(TOKENS)]
        engine.dispose()
        print(f"stack on 127.0.0.1:{port}; {RATE:g} reports/s for {SECONDS:g} s …", flush=True)
        probe = Probe(proc.pid, tmp / "pg", tmp / "mq", database)
        section = run_load(f"http://127.0.0.1:{port}", tokens, assignments, RATE, probe)
        print(f"… and {LOW_RATE:g} reports/s for {SECONDS:g} s", flush=True)
        section["at_low_rate"] = run_load(f"http://127.0.0.1:{port}", tokens, assignments, LOW_RATE, probe)
        probe.close()
        section["load_average_1min_before"] = load_before
        assignments.close()
        section.update({"timestamp": started.isoformat(timespec="seconds"), "warmup_reports": WARMUP,
                        "operator_tokens": TOKENS, "postgresql": "durable (fsync, synchronous_commit on)",
                        "method": "open loop; latency from each POST's start to its case.assigned received from "
                                  "the broker (see bench/pipeline.py)",
                        "notes": NOTES})
    finally:
        stop_stack(proc)
        mq.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    report["pipeline"] = section
    p99 = section["report_to_assignment"]["p99_ms"]
    met = p99 is not None and p99 <= BAR_P99_MS and not section["assignments_missing"] \
        and section["rate_per_s_achieved"] >= 0.95 * RATE
    bars = [b for b in report.get("design_bars", []) if b.get("workload") != "pipeline"]
    bars.append({"bar": f"report -> assignment published, p99 at {RATE:g} reports/s sustained", "at_most_ms": BAR_P99_MS,
                 "workload": "pipeline", "measured_ms": p99, "met": met})
    report["design_bars"] = bars
    tmp_out = RESULTS.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp_out, RESULTS)
    r = section["report_to_assignment"]
    print(f"report → assignment: p50 {r['p50_ms']} ms, p99 {p99} ms, max {r['max_ms']} ms over {r['n']} reports "
          f"at {section['rate_per_s_achieved']}/s; missing {section['assignments_missing']}; "
          f"HTTP {section['http_statuses']}; bar {'met' if met else 'MISSED'}")
    cost = section.get("cost_per_report")
    if cost:
        print(f"per report: {cost['cpu_ms_per_report_total']} ms CPU over all processes "
              + ", ".join(f"{g} {v['cpu_ms_per_report']}" for g, v in cost["groups"].items())
              + f"; {cost['transactions_per_report']} PostgreSQL transactions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
