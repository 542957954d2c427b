"""What the public HTTP path costs (issue #15 item 1, "choose, measure, document"): the same read —
a desk opening a case, GET /api/v1/cases/{id} with an operator's token (the token checked and the
read recorded in the access log: a write per read), not rate-limited — sent by N keep-alive clients
for a fixed time (a wrk-like closed loop)

  a. straight to intake's own server (nameko's eventlet WSGI server), and
  b. through the gateway (`minqing gateway`: werkzeug's threaded server, one HTTP hop to intake),

on the embedded default (SQLite, a private RabbitMQ node). nginx in front (deploy/nginx) adds TLS and
one more loopback hop; it is not in this figure. Run: `.venv/bin/python -m bench.http_serving
[--seconds 15] [--clients 1,8,32]`; it prints JSON and writes it to bench/http_serving.json.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from bench.intake_load import ROOT, _start_stack, percentile

REPORT = {"county": "longjiang", "channel": "hotline", "category": "202", "summary": "村口路灯坏了，晚上看不见路",
          "location": {"township": "黑岗乡", "village": "靠山村", "hamlet": "靠山村11屯"},
          "reporter": {"name": "测试", "phone": "13700000000"}}


def closed_loop(port: int, clients: int, seconds: float, path: str, headers: dict) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, codes = [], {}
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                code = resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                code = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append((time.perf_counter() - started) * 1000)
            codes[code] = codes.get(code, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for c, n in codes.items():
                statuses[c] = statuses.get(c, 0) + n

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"clients": clients, "requests": len(latencies), "per_second": round(len(latencies) / elapsed, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1)}


def main() -> None:
    from minqing.shell.devstack import RabbitMQ, free_port_block
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()
    base_dir = ROOT / ".run" / "bench"
    base_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="http-serving-", dir=base_dir))
    mq = RabbitMQ(tmp / "mq")
    proc = None
    try:
        mq.start()
        run_dir = tmp / "stack"
        run_dir.mkdir()
        port = free_port_block(8)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINQING_")}
        env.update(MINQING_RUN_DIR=str(run_dir), MINQING_DATABASE_URL=f"sqlite:///{run_dir / 'ledger.db'}",
                   MINQING_AMQP_URI=mq.uri, MINQING_HTTP_PORT=str(port), MINQING_LOG_LEVEL="WARNING")
        proc, tokens = _start_stack(run_dir, env)
        headers = {"Authorization": f"Bearer {tokens['operator']}"}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/api/v1/cases", body=json.dumps(REPORT).encode(),
                     headers={**headers, "Content-Type": "application/json"})
        case_id = json.loads(conn.getresponse().read())["case_id"]
        conn.close()
        path = f"/api/v1/cases/{case_id}"
        out = {"path": "/api/v1/cases/{case_id}", "seconds": args.seconds, "cpus": os.cpu_count(),
               "load_average_at_start": os.getloadavg()[0], "direct_to_intake": [], "through_gateway": []}
        for clients in (int(c) for c in args.clients.split(",")):
            out["direct_to_intake"].append(closed_loop(port + 1, clients, args.seconds, path, headers))
            out["through_gateway"].append(closed_loop(port, clients, args.seconds, path, headers))
        out["load_average_at_end"] = os.getloadavg()[0]
        text = json.dumps(out, indent=2)
        print(text)
        (ROOT / "bench" / "http_serving.json").write_text(text + "\n")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except Exception:
                proc.kill()
        mq.stop()


if __name__ == "__main__":
    main()
