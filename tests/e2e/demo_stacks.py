"""Whole stacks on the demo clock (issue #17.1, #12 "the suite passes at any instant"): `minqing run`
as a subprocess with MINQING_CLOCK=demo, on its own PostgreSQL database and RabbitMQ vhost, and the
clock moved the way an admin moves it (`minqing clock set/advance`)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime

from tests.e2e.conftest import Stack, start_on_free_ports
from tests.support import county_dir

from minqing import democlock


class DemoStack(Stack):
    def start(self, timeout: float = 400.0) -> "DemoStack":
        """As Stack.start, with patience for a machine shared by many test sessions."""
        import json
        import subprocess as sp
        self.out = open(self.run_dir / "run.out", "ab")
        self.proc = sp.Popen([sys.executable, "-m", "minqing.shell.cli", "run"], env=self.env,
                             stdout=self.out, stderr=sp.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"minqing run exited: {(self.run_dir / 'run.out').read_text()[-3000:]}")
            if b"Minqing is running" in (self.run_dir / "run.out").read_bytes():
                self.tokens = json.loads((self.run_dir / "demo-tokens.json").read_text())
                return self
            time.sleep(0.3)
        raise RuntimeError("the stack did not start in time")


def start_demo_stack(tmp_path_factory, postgres, rabbit, *, name: str, start: str, extra_env: dict | None = None) -> Stack:
    run_dir = tmp_path_factory.mktemp(name)
    counties = county_dir(tmp_path_factory.mktemp(f"{name}-policies"), "deploy/counties/longjiang.yaml")
    database = postgres.create_database(f"{name}_{os.getpid()}_{int(time.time() * 1000) % 10**8}")
    env = {**os.environ, "MINQING_RUN_DIR": str(run_dir), "MINQING_DATABASE_URL": database,
           "MINQING_AMQP_URI": own_vhost(rabbit), "MINQING_COUNTIES_DIR": str(counties),
           "MINQING_SWEEP_SECONDS": "0.5", "MINQING_NOTIFY_SECONDS": "0.3", "MINQING_FOLLOW_SECONDS": "0.25",
           "MINQING_CLOCK": "demo",
           "MINQING_CLOCK_START": start, "MINQING_CLOCK_RATE": "0", **(extra_env or {})}
    return start_on_free_ports(lambda port: DemoStack(run_dir, env, port), env)


def own_vhost(rabbit) -> str:
    """A fresh vhost (as tests.support.private_vhost), patient with rabbitmqctl on a loaded machine."""
    import uuid
    vhost = f"t-{uuid.uuid4().hex[:10]}"
    rabbit.ctl("add_vhost", vhost, timeout=300)
    rabbit.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*", timeout=300)
    return rabbit.uri.rstrip("/") + "/" + vhost


def clock(stack: Stack, *args: str) -> str:
    """`minqing clock …` against the stack, as an admin types it."""
    done = subprocess.run([sys.executable, "-m", "minqing.shell.cli", "clock", *args], env=stack.env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stdout


def set_clock(stack: Stack, instant: str) -> None:
    clock(stack, "set", instant)
    reissue_tokens(stack, datetime.fromisoformat(instant.replace("Z", "+00:00")))
    time.sleep(democlock.REFRESH_SECONDS + 0.5 + 0.6)   # every process follows, and a sweep runs


def reissue_tokens(stack: Stack, at: datetime) -> None:
    """Tokens expire in demo time: the test's desks get fresh ones, issued at the demo instant."""
    from minqing import access
    from minqing.clock import ManualClock
    from minqing.db import make_engine
    from minqing.shell.demo import DEMO_TOKENS
    engine = make_engine(stack.env["MINQING_DATABASE_URL"])
    try:
        for role, unit, cadre in DEMO_TOKENS:
            stack.tokens[role] = access.issue_token(engine, role, "longjiang", unit=unit, cadre=cadre, label="test",
                                                    days=30, clock=ManualClock(at))[1]
    finally:
        engine.dispose()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
