"""Reports posted at intake's rate limit (issue #12's done-when: 1,000 reports to `make run`'s stack,
none slower than 2 s, no 503).

`python -m bench.intake_load [--reports 1000] [--clients 5] [--backend sqlite|postgres|both]`

Method
------
* The stack as `make run` starts it: `minqing run` with its defaults — the embedded SQLite ledger —
  on a private RabbitMQ node (minqing.shell.devstack); with `--backend postgres`, on a private durable
  PostgreSQL 15 instead.
* `--clients` report desks, each with its own operator token, each posting one report at a time
  exactly as fast as the token's rate limit admits (services/intake/service.py REPORT_LIMIT: a burst of
  30, then 2 per second): the k-th report of a desk is sent when the token bucket holds a token again.
* Meanwhile intake's follower is woken 20 times a second through its queue (a broker wake-up takes
  the SQLite write lock to read the ledger head and save its checkpoint), which is what made a report
  wait 30 s for the lock before issue #12.2 was fixed.
* Each report's latency is the POST's response time through the gateway. Figures: count, statuses,
  p50/p99/max; merged into bench/results.json under `intake_load`.

`tests/e2e/test_intake_load.py` runs the same load, fewer reports, in `make test`.
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

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
RATE_PER_TOKEN = 2.0      # services.intake.service.REPORT_LIMIT
BURST_PER_TOKEN = 30
PLACES = [("heigang", "heigang.kaoshan", "heigang.kaoshan.11"), ("heigang", "heigang.kaoshan", "heigang.kaoshan.3"),
          ("shanquan", "shanquan.pingan", "shanquan.pingan.1"), ("shanquan", "shanquan.pingan", "shanquan.pingan.2"),
          ("longjiang-zhen", "longjiang-zhen.dongsheng", None), ("qikeshu", "qikeshu.qikeshu", "qikeshu.qikeshu.1")]
CATEGORIES = ["101", "201", "202", "301", "302", "401", "901"]


def report_body(i: int) -> dict:
    township, village, hamlet = random.choice(PLACES)
    return {"county": "longjiang", "channel": "hotline", "category": random.choice(CATEGORIES),
            "summary": f"压测诉求 #{i}：道路坑洼需要修补",
            "location": {"township": township, "village": village, "hamlet": hamlet},
            "reporter": {"name": "测试", "phone": f"135{random.randrange(10**8):08d}"}}


def post(base: str, token: str, body: dict, timeout: float, headers: dict | None = None) -> tuple[int, float]:
    """POST one report; (status, seconds). A client timeout counts as status 0."""
    request = urllib.request.Request(f"{base}/api/v1/cases", data=json.dumps(body, ensure_ascii=False).encode(),
                                     method="POST", headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {token}", **(headers or {})})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            resp.read()
            return resp.status, time.monotonic() - started
    except urllib.error.HTTPError as err:
        err.read()
        return err.code, time.monotonic() - started
    except OSError:          # timed out (or the connection broke): the client gave up
        return 0, time.monotonic() - started


def percentile(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class WakeFlood:
    """Wakes intake's follower `per_second` times a second by putting a wake-up (a CloudEvent-shaped
    body whose position is past the head) straight on its queue `minqing.intake`."""

    def __init__(self, amqp_uri: str, per_second: float = 20.0):
        self.amqp_uri, self.interval = amqp_uri, 1.0 / per_second
        self.running = True
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        body = {"specversion": "1.0", "id": "bench-wake", "source": "/bench", "type": "cn.minqing.policy.published",
                "subject": "bench", "time": "2026-01-01T00:00:00+08:00", "datacontenttype": "application/json",
                "data": {}, "sequence": f"{10**15:020d}", "county": "longjiang"}
        with kombu.Connection(self.amqp_uri, connect_timeout=10) as conn:
            producer = conn.Producer(serializer="json")
            while self.running:
                producer.publish(body, exchange="", routing_key="minqing.intake")
                self.sent += 1
                time.sleep(self.interval)

    def close(self):
        self.running = False
        self.thread.join(5)


def post_at_rate_limit(base: str, tokens: list[str], per_token: int, *, timeout: float = 30.0,
                       rate: float = RATE_PER_TOKEN, burst: int = BURST_PER_TOKEN) -> dict:
    """Each token's desk posts `per_token` reports, one at a time, each as soon as the token's bucket
    admits it (5% slack, so the limiter's clock and ours may differ a little)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    begin = time.monotonic()

    def desk(d: int):
        for k in range(per_token):
            due = begin + max(0.0, (k + 1 - burst) / rate) * 1.05
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            status, seconds = post(base, tokens[d], report_body(d * per_token + k), timeout)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(seconds)

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        list(pool.map(desk, range(len(tokens))))
    elapsed = time.monotonic() - begin
    ms = [s * 1000 for s in latencies]
    return {"reports": len(ms), "clients": len(tokens), "seconds": round(elapsed, 1),
            "rate_per_s_achieved": round(len(ms) / elapsed, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "503s": statuses.get(503, 0), "slower_than_2s": sum(1 for x in ms if x > 2000),
            "p50_ms": round(percentile(ms, 50), 1), "p99_ms": round(percentile(ms, 99), 1),
            "max_ms": round(max(ms), 1)}


def _start_stack(run_dir: Path, env: dict) -> tuple[subprocess.Popen, dict]:
    out_path = run_dir / "run.out"
    with open(out_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "minqing.shell.cli", "run"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while b"Minqing is running" not in out_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the stack did not start: " + out_path.read_text()[-2000:])
        time.sleep(0.3)
    return proc, json.loads((run_dir / "demo-tokens.json").read_text())


def run_backend(backend: str, reports: int, clients: int) -> dict:
    from minqing import access
    from minqing.db import make_engine
    from minqing.shell.devstack import PostgreSQL, RabbitMQ, free_port_block
    base_dir = ROOT / ".run" / "bench"
    base_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"intake-{backend}-", dir=base_dir))
    mq = RabbitMQ(tmp / "mq")
    pg = PostgreSQL(tmp / "pg", durable=True) if backend == "postgres" else None
    proc = None
    try:
        mq.start()
        run_dir = tmp / "stack"
        run_dir.mkdir()
        database = pg.start().create_database("intake_load") if pg else f"sqlite:///{run_dir / 'ledger.db'}"
        port = free_port_block(6)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINQING_")}
        env.update(MINQING_RUN_DIR=str(run_dir), MINQING_DATABASE_URL=database, MINQING_AMQP_URI=mq.uri,
                   MINQING_HTTP_PORT=str(port), MINQING_LOG_LEVEL="WARNING",
                   MINQING_VAULT_KEY=Fernet.generate_key().decode())
        proc, _ = _start_stack(run_dir, env)
        engine = make_engine(database)
        tokens = [access.issue_token(engine, "operator", "longjiang", label=f"bench-{i}")[1] for i in range(clients)]
        engine.dispose()
        per_token = -(-reports // clients)
        print(f"{backend}: {per_token * clients} reports from {clients} desks at the rate limit …", flush=True)
        flood = WakeFlood(mq.uri)
        try:
            section = post_at_rate_limit(f"http://127.0.0.1:{port}", tokens, per_token)
        finally:
            flood.close()
        section["follower_wakeups_sent"] = flood.sent
        return section
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        mq.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake_load", description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=5, help="report desks, one operator token each")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args(argv)
    started = datetime.now(timezone.utc)
    sections = {}
    for backend in (("sqlite", "postgres") if args.backend == "both" else (args.backend,)):
        sections[backend] = {**run_backend(backend, args.reports, args.clients),
                             "load_average_1min_before": round(os.getloadavg()[0], 2)}
        s = sections[backend]
        print(f"{backend}: {s['reports']} reports in {s['seconds']} s; statuses {s['statuses']}; p50 {s['p50_ms']} ms, "
              f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms; slower than 2 s: {s['slower_than_2s']}; "
              f"503s: {s['503s']}", flush=True)
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    report["intake_load"] = {"timestamp": started.isoformat(timespec="seconds"), **sections,
                             "method": "each desk (operator token) posts at its rate limit, 2/s after a burst of 30; "
                                       "intake's follower woken 20/s meanwhile (see bench/intake_load.py)"}
    tmp_out = RESULTS.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp_out, RESULTS)
    ok = all(s["503s"] == 0 and s["slower_than_2s"] == 0 and s["statuses"] == {"201": s["reports"]}
             for s in sections.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
