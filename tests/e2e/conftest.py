"""The whole stack (`minqing run`) as a subprocess, on the session's PostgreSQL and RabbitMQ."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from cryptography.fernet import Fernet
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.notify_servers import HttpRecorder, SmtpRecorder
from tests.support import Watcher, county_dir

from minqing.shell import devstack


def read_pid(path: Path, timeout: float = 10.0) -> int:
    """The pid in a pid file. `minqing run` replaces pid files atomically; this also waits out a file
    not yet written (a child being restarted) instead of failing on `int('')`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


OPERATOR = object()     # default: act as the demo county's operator


class Stack:
    def __init__(self, run_dir: Path, env: dict, http_port: int):
        self.run_dir, self.env, self.http_port = run_dir, env, http_port
        if env.get("MINQING_DATABASE_URL", "").startswith("postgresql") and not (
                env.get("MINQING_VAULT_KEY") or env.get("MINQING_VAULT_KEY_FILE")):
            # a stack on PostgreSQL never defaults its vault key beside the data: each test stack gets one
            from cryptography.fernet import Fernet
            env["MINQING_VAULT_KEY"] = Fernet.generate_key().decode()
        self.base = f"http://127.0.0.1:{http_port}"
        self.proc: subprocess.Popen | None = None
        self.tokens: dict[str, str] = {}

    def issue(self, role: str, county: str = "longjiang", unit: str | None = None, cadre: str | None = None) -> str:
        from minqing import access
        from minqing.db import make_engine
        engine = make_engine(self.env["MINQING_DATABASE_URL"])
        try:
            return access.issue_token(engine, role, county, unit=unit, cadre=cadre, label="test")[1]
        finally:
            engine.dispose()

    def start(self) -> "Stack":
        self.out = open(self.run_dir / "run.out", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "minqing.shell.cli", "run"], env=self.env,
                                     stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"minqing run exited: {(self.run_dir / 'run.out').read_text()[-3000:]}")
            if b"Minqing is running" in (self.run_dir / "run.out").read_bytes():
                self.tokens = json.loads((self.run_dir / "demo-tokens.json").read_text())
                return self
            time.sleep(0.3)
        raise RuntimeError("the stack did not start in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def pid(self, name: str) -> int:
        return read_pid(self.run_dir / "pids" / f"{name}.pid")

    def request(self, method: str, path: str, body=None, raw: bytes | None = None, headers=None, token=OPERATOR):
        data = raw if raw is not None else (json.dumps(body, ensure_ascii=False).encode() if body is not None else None)
        if token is OPERATOR:
            token = self.tokens["operator"]
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **auth, **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            payload = err.read()
            try:
                return err.code, json.loads(payload)
            except ValueError:
                return err.code, payload.decode(errors="replace")

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.run_dir / "logs").glob("*.log"))


@pytest.fixture(scope="session")
def stack_db(postgres):
    return postgres.create_database("e2e_stack")


@pytest.fixture(scope="session")
def broker_tap(rabbit):
    """Every event the stack publishes in this session, kept in a queue bound before the stack starts,
    for the final search for personal data (tests/e2e/test_zz_personal_data.py)."""
    tap = Watcher(rabbit.uri, keys=("#",), name="test.tap.session")
    yield tap
    tap.close()


@pytest.fixture(scope="session")
def sms_gateway():
    """The stack's SMS gateway: a local HTTP server that records every message (MINQING_SMS_URL)."""
    server = HttpRecorder()
    yield server
    server.close()


@pytest.fixture(scope="session")
def smtp_server():
    """The stack's SMTP server (aiosmtpd), recording every e-mail (MINQING_SMTP_HOST/PORT)."""
    server = SmtpRecorder()
    yield server
    server.close()


def start_on_free_ports(make, env: dict, attempts: int = 3):
    """Start the stack `make(port)` builds on a free block of ports. The block lies below the
    kernel's ephemeral range (devstack.free_port), so no outgoing connection takes one of its ports;
    another test's listener still may before `minqing run` binds it: then it refuses to start ("are
    in use"), and a new block is tried."""
    for attempt in range(attempts):
        port = devstack.free_port_block(8)     # the gateway and every port Settings.PORT_OFFSETS names
        env["MINQING_HTTP_PORT"] = str(port)
        try:
            return make(port).start()
        except RuntimeError as exc:
            if "are in use" not in str(exc) or attempt == attempts - 1:
                raise


@pytest.fixture(scope="session")
def stack(tmp_path_factory, stack_db, rabbit, broker_tap, sms_gateway, smtp_server):
    run_dir = tmp_path_factory.mktemp("stack")
    counties = county_dir(tmp_path_factory.mktemp("policies"), "deploy/counties/longjiang.yaml",
                          "tests/fixtures/counties/heping.yaml")
    env = {**os.environ, "MINQING_RUN_DIR": str(run_dir), "MINQING_DATABASE_URL": stack_db,
           "MINQING_AMQP_URI": rabbit.uri, "MINQING_COUNTIES_DIR": str(counties),
           "MINQING_VAULT_KEY": Fernet.generate_key().decode(),
           "MINQING_SWEEP_SECONDS": "1", "MINQING_SMS_URL": sms_gateway.url + "/sms",
           "MINQING_SMTP_HOST": "127.0.0.1", "MINQING_SMTP_PORT": str(smtp_server.port),
           "MINQING_SMTP_FROM": "minqing@heping.example", "MINQING_NOTIFY_SECONDS": "0.3",
           "MINQING_NOTIFY_BACKOFF_SECONDS": "0.5"}
    s = start_on_free_ports(lambda port: Stack(run_dir, env, port), env)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def sqlite_stack(tmp_path_factory, rabbit):
    """The whole stack on the embedded default, a SQLite ledger, in a vhost of its own on the
    session's RabbitMQ node (so its queues never take the PostgreSQL stack's messages)."""
    from tests.support import private_vhost
    run_dir = tmp_path_factory.mktemp("sqlite-stack")
    counties = county_dir(tmp_path_factory.mktemp("sqlite-policies"), "deploy/counties/longjiang.yaml",
                          "tests/fixtures/counties/heping.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINQING_")}
    env.update({"MINQING_RUN_DIR": str(run_dir), "MINQING_DATABASE_URL": f"sqlite:///{run_dir / 'ledger.db'}",
                "MINQING_AMQP_URI": private_vhost(rabbit), "MINQING_COUNTIES_DIR": str(counties)})
    s = start_on_free_ports(lambda port: Stack(run_dir, env, port), env)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory, postgres, rabbit, sms_gateway):
    """The whole stack on the demo clock, stopped (rate 0) at 2026-09-30 08:00 in China and moved only
    forward by the tests (tests/e2e/demo_stacks.py): shared by tests/e2e/test_demo_clock.py, which sets
    it to fixed instants in time order, and the modules after it, which advance it from wherever it is.
    One stack for all of them (a stack costs about a minute); they run on one xdist worker (tests/conftest.py)."""
    from tests.e2e.demo_stacks import start_demo_stack
    stack = start_demo_stack(tmp_path_factory, postgres, rabbit, name="democlock", start="2026-09-30T08:00+08:00",
                             extra_env={"MINQING_SMS_URL": sms_gateway.url + "/sms"})
    yield stack
    stack.stop()
