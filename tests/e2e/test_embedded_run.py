"""`minqing run` on the embedded default — SQLite ledger, a private RabbitMQ node it starts itself —
reaches healthy, takes a case through to assignment, and stops everything on Ctrl-C."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from minqing import devstack
from tests.e2e.conftest import free_port_block


def _get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_embedded_stack_runs_and_stops_cleanly(tmp_path):
    http_port, amqp_port = free_port_block(), devstack.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINQING_")}
    env.update(MINQING_RUN_DIR=str(tmp_path / "run"), MINQING_HTTP_PORT=str(http_port),
               MINQING_AMQP_PORT=str(amqp_port))
    out = tmp_path / "run.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "minqing.cli", "run"], env=env, stdout=sink,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        while b"Minqing is running" not in out.read_bytes():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.3)
        text = out.read_text()
        assert f"http://127.0.0.1:{http_port}/health" in text and "curl" in text
        tokens = json.loads((tmp_path / "run" / "demo-tokens.json").read_text())
        assert set(tokens) == {"operator", "cadre", "supervisor", "auditor", "integrator", "admin"}
        assert all(token in text for token in tokens.values())
        assert oct((tmp_path / "run" / "demo-tokens.json").stat().st_mode & 0o777) == "0o600"
        operator = tokens["operator"]
        base = f"http://127.0.0.1:{http_port}"
        health = _get(base + "/health")
        assert health["status"] == "ok"
        assert health["services"]["intake"]["checks"]["ledger"]["backend"] == "sqlite"

        body = json.dumps({"county": "longjiang", "channel": "service_hall", "category": "301",
                           "summary": "老人在外地养老，需代办身份证", "location": {"township": "山泉镇", "village": "平安村"},
                           "reporter": {"name": "赵金枝", "phone": "13600001111"}}, ensure_ascii=False).encode()
        req = urllib.request.Request(base + "/api/v1/cases", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {operator}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            case_id = json.loads(resp.read())["case_id"]
        deadline = time.monotonic() + 20
        while _get(f"{base}/api/v1/cases/{case_id}", operator)["status"] != "assigned":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert _get(f"{base}/api/v1/cases/{case_id}", operator)["assignment"]["unit"] == "shanquan.pingan-station"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, out.read_text()
    assert "stopped." in out.read_text()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", amqp_port)) != 0, "the private RabbitMQ node is still running"
        assert sock.connect_ex(("127.0.0.1", http_port + 1)) != 0, "a service is still running"
