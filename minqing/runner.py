"""`minqing run`: the whole stack in the foreground, stopped cleanly with Ctrl-C.

Starts a private RabbitMQ node (unless MINQING_AMQP_URI names a broker), publishes the county
policies under MINQING_COUNTIES_DIR, then runs the relay and the four services as child processes
(restarting any that dies) and the gateway on 127.0.0.1:MINQING_HTTP_PORT.
"""
from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from minqing.config import Settings

log = logging.getLogger("minqing.run")

CHILDREN = {
    "relay": [sys.executable, "-m", "minqing.cli", "relay"],
    "intake": [sys.executable, "-m", "minqing.service_main", "intake"],
    "routing": [sys.executable, "-m", "minqing.service_main", "routing"],
    "notify": [sys.executable, "-m", "minqing.service_main", "notify"],
    "assessment": [sys.executable, "-m", "minqing.service_main", "assessment"],
    "console": [sys.executable, "-m", "services.console.main"],
}


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Supervisor:
    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def start(self, name: str) -> None:
        out = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(CHILDREN[name], env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        (self.log_dir.parent / "pids").mkdir(exist_ok=True)
        (self.log_dir.parent / "pids" / f"{name}.pid").write_text(str(proc.pid))

    def watch(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None and not self.stopping:
                    print(f"minqing: {name} exited with code {proc.returncode}; restarting it "
                          f"(log: {self.log_dir / (name + '.log')})", flush=True)
                    self.start(name)

    def stop_all(self, timeout: float = 15.0) -> None:
        self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(port: int, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                body = json.loads(resp.read())
                if body.get("status") == "ok":
                    return body
        except Exception:
            pass
        time.sleep(0.5)
    return body


def run_stack(settings: Settings) -> int:
    import os

    from minqing.county import PolicyError, publish, read_policy_file
    from services.assessment import rules as assessment_rules
    from minqing.cli import _engine_and_ledger, all_metadata
    from minqing.gateway import serve
    from minqing.logs import setup_logging

    setup_logging(settings.log_level, "run")
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log_dir = settings.run_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    busy = [p for p in [settings.http_port, *settings.service_ports.values()] if _port_busy(p)]
    if busy:
        print(f"minqing: port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use; "
              f"set MINQING_HTTP_PORT to a free base port (the services use the next four)", file=sys.stderr)
        return 1

    broker = None
    env = dict(os.environ)
    if settings.amqp_uri is None:
        from minqing import devstack
        if _port_busy(settings.amqp_port):
            print(f"minqing: port {settings.amqp_port} is in use (another RabbitMQ?); set MINQING_AMQP_PORT to a "
                  f"free port, or MINQING_AMQP_URI to use an existing broker", file=sys.stderr)
            return 1
        missing = devstack.missing_binaries()
        if any(name.startswith("rabbitmq") for name, _ in missing):
            print(f"minqing: RabbitMQ is not installed. Install it with:\n  {devstack.install_command(['rabbitmq-server'])}",
                  file=sys.stderr)
            return 1
        print(f"starting a private RabbitMQ node on 127.0.0.1:{settings.amqp_port} (data in {settings.run_dir}) …",
              flush=True)
        broker = devstack.RabbitMQ(settings.run_dir, settings.amqp_port).start()
    env["MINQING_AMQP_URI"] = settings.effective_amqp_uri()
    env["MINQING_RUN_DIR"] = str(settings.run_dir)

    supervisor = Supervisor(env, log_dir)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        engine, ledger = _engine_and_ledger(settings)
        for md in all_metadata():
            md.create_all(engine)
        for path in sorted(settings.counties_dir.glob("*.yaml")):
            try:
                version, fresh = publish(ledger, read_policy_file(path), actor="admin:minqing-run")
            except PolicyError as exc:
                print(f"minqing: {path}: {exc}", file=sys.stderr)
                return 1
            print(f"county policy {path.name}: version {version}{' (published)' if fresh else ''}", flush=True)
            rules_path = settings.assessment_dir / path.name
            if rules_path.exists():
                try:
                    version, fresh = assessment_rules.publish(ledger, assessment_rules.read_rules_file(rules_path),
                                                              actor="admin:minqing-run")
                except assessment_rules.RulesError as exc:
                    print(f"minqing: {rules_path}: {exc}", file=sys.stderr)
                    return 1
                print(f"assessment rules {rules_path.name}: version {version}{' (published)' if fresh else ''}",
                      flush=True)
        for name in CHILDREN:
            supervisor.start(name)
        threading.Thread(target=serve, args=(settings, ledger, stop), daemon=True).start()
        health = _wait_healthy(settings.http_port, 90)
        if not health or health.get("status") != "ok":
            print(f"minqing: the stack did not become healthy; see the logs in {log_dir}\n"
                  f"{json.dumps(health, ensure_ascii=False, indent=2)}", file=sys.stderr)
            return 1
        threading.Thread(target=supervisor.watch, args=(stop,), daemon=True).start()
        _print_welcome(settings, log_dir, demo_tokens(engine, settings.run_dir))
        stop.wait()
        print("\nstopping …", flush=True)
        return 0
    finally:
        supervisor.stop_all()
        if broker is not None:
            broker.stop()
        print("stopped.", flush=True)


DEMO_TOKENS = [   # (role, unit, cadre) in the demo county
    ("operator", None, None),
    ("cadre", "heigang.kaoshan-station", "lj-c002"),
    ("supervisor", "heigang-centre", None),
    ("auditor", None, None),
    ("integrator", None, None),
    ("admin", None, None),
]


def demo_tokens(engine, run_dir: Path, county: str = "longjiang") -> dict[str, str]:
    """One token per role for the demo county, kept in `.run/demo-tokens.json` (mode 0600) so they
    stay the same between runs; reissued when the database no longer accepts them."""
    import os

    from minqing import access
    from minqing.db import read_transaction
    from minqing.http import ApiError
    path = run_dir / "demo-tokens.json"
    try:
        tokens = json.loads(path.read_text())
        with read_transaction(engine) as conn:
            for token in tokens.values():
                access.authenticate(conn, f"Bearer {token}")
        if set(tokens) == {role for role, _, _ in DEMO_TOKENS}:
            return tokens
    except (OSError, ValueError, ApiError):
        pass
    tokens = {}
    for role, unit, cadre in DEMO_TOKENS:
        _, tokens[role] = access.issue_token(engine, role, county, unit=unit, cadre=cadre,
                                             label="demo (minqing run)", days=30)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(tokens, handle, indent=2)
    return tokens


def _print_welcome(settings: Settings, log_dir: Path, tokens: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{settings.http_port}"
    example = json.dumps({
        "county": "longjiang", "channel": "hotline", "category": "202",
        "summary": "黄牛场通往11屯的道路水毁严重，车辆无法通行",
        "location": {"township": "黑岗乡", "village": "靠山村", "hamlet": "靠山村11屯"},
        "reporter": {"name": "张三", "phone": "13800138000"}}, ensure_ascii=False)
    token_lines = "\n".join(f"  {role:<11} {token}" for role, token in tokens.items())
    print(f"""
Minqing is running.
  health        {base}/health
  API document  {base}/api/v1/openapi.json
  county        {base}/api/v1/counties/longjiang
  report        POST {base}/api/v1/cases
  case          {base}/api/v1/cases/<case_id>
  track         {base}/api/v1/track/<tracking_no>?pin=<pin>
  scorecards    {base}/api/v1/assessment/longjiang/cadres
  broker        {settings.effective_amqp_uri()}  (exchange minqing.events)
  ledger        {settings.database_url}
  logs          {log_dir}

Demo tokens for 龙江县 (kept in {settings.run_dir / 'demo-tokens.json'}; cadre = lj-c002 of
靠山村代理代办服务站, supervisor = 黑岗乡):
{token_lines}

Console (operator, cadre, resident): {base}/console/   tracking page: {base}/console/track
  demo logins: .venv/bin/minqing account add NAME --county longjiang --role operator
               .venv/bin/minqing account add NAME --county longjiang --role cadre --cadre lj-c002
  (each prints a temporary password, changed at the first login; see docs/console.md)

Try it:
  curl -s -X POST {base}/api/v1/cases -H "Authorization: Bearer {tokens['operator']}" \\
    -H 'Content-Type: application/json' -d '{example}'
  .venv/bin/minqing events tail

Ctrl-C stops everything.
""", flush=True)
