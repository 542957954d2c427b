"""`minqing run`: the whole stack in the foreground, stopped cleanly with Ctrl-C.

Starts a watchdog, a private RabbitMQ node (unless MINQING_AMQP_URI names a broker), publishes the
county policies and assessment rules under MINQING_COUNTIES_DIR / MINQING_ASSESSMENT_DIR (by the rule in
`publish_at_start`), then runs the relay, the four services and the gateway on
127.0.0.1:MINQING_HTTP_PORT as child processes, restarting any that dies.

Process supervision (docs/operations.md):
* every child runs in its own process group, recorded with the watchdog (minqing.watchdog), which
  stops them all — the private RabbitMQ node and its epmd included — when `minqing run` dies, even by
  SIGKILL;
* `<run dir>/run.lock` is held by `minqing run` and its watchdog: a second `minqing run` on the same run
  dir is refused while the first lives, and waits while a killed one's watchdog is still cleaning up;
* the gateway and service ports are reserved for the whole run (minqing.ports);
* pid files (`<run dir>/pids/<name>.pid`) are written atomically; `<run dir>/broker.uri` (mode 0600)
  names the broker this run uses, for `minqing events tail --broker`.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from minqing import ports
from minqing.config import Settings
from minqing.shell.files import write_atomically
from minqing.shell.demo import _print_welcome, demo_accounts, demo_tokens, embedded

log = logging.getLogger("minqing.run")

CHILDREN = {
    # the same commands a county places one by one (systemd units, compose, k8s)
    "relay": [sys.executable, "-m", "minqing.shell.cli", "relay"],
    "intake": [sys.executable, "-m", "minqing.shell.cli", "service", "intake"],
    "routing": [sys.executable, "-m", "minqing.shell.cli", "service", "routing"],
    "notify": [sys.executable, "-m", "minqing.shell.cli", "service", "notify"],
    "assessment": [sys.executable, "-m", "minqing.shell.cli", "service", "assessment"],
    "console": [sys.executable, "-m", "minqing.shell.cli", "service", "console"],
    "gateway": [sys.executable, "-m", "minqing.shell.cli", "gateway"],
}
START_ACTOR = "admin:minqing-run"      # who publishes what `minqing run` publishes from files
BROKER_FILE = "broker.uri"
RESTART_DELAYS = (0.5, 1, 2, 5, 10, 30)   # seconds before the n-th quick restart in a row
STEADY_SECONDS = 60                      # a child that ran this long starts the delays afresh


class Watchdog:
    """The supervisor's side of minqing.watchdog: records process groups; its death is the signal."""

    def __init__(self, run_dir: Path, keep_fds: tuple[int, ...] = ()):
        read_end, self._write_end = os.pipe()
        log_file = open(run_dir / "logs" / "watchdog.log", "ab")
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "minqing.watchdog"], stdin=read_end,
                                         stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                         pass_fds=keep_fds)
        finally:
            os.close(read_end)
            log_file.close()
        self._lock = threading.Lock()

    def _say(self, line: str) -> None:
        with self._lock:
            try:
                os.write(self._write_end, (line + "\n").encode())
            except OSError:
                pass

    def record(self, pgid: int) -> None:
        self._say(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._say(f"-{pgid}")

    def close(self) -> None:
        """A clean stop: everything was stopped already, so the watchdog has nothing left to do."""
        self._say("clear")
        os.close(self._write_end)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RunLock:
    """`<run dir>/run.lock`, held (flock) by `minqing run` and inherited by its watchdog."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "run.lock"
        self.pid_file = run_dir / "pids" / "run.pid"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _try(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise

    def _owner_alive(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return pid if b"minqing" in f.read() else None
        except (OSError, ValueError):
            return None

    def acquire(self, wait: float = 60.0) -> str | None:
        """None when acquired, else why not. While a killed run's watchdog is still stopping its
        processes, wait for it (up to `wait` seconds)."""
        if self._try():
            return self._mine()
        owner = self._owner_alive()
        if owner is not None:
            return f"another `minqing run` (pid {owner}) is using {self.path.parent}; stop it first"
        print("waiting for the previous run's processes to stop …", flush=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self._try():
                return self._mine()
            time.sleep(0.2)
        return f"{self.path} is still held (by a stopping run?) after {wait:.0f}s"

    def _mine(self) -> None:
        self.pid_file.parent.mkdir(exist_ok=True)
        write_atomically(self.pid_file, str(os.getpid()))
        return None


class Supervisor:
    """Starts the children, each in its own process group recorded with the watchdog, and restarts any
    that exits — from the first start on, with growing delays while it keeps failing (a port briefly
    taken, the broker not yet up), so a slow start never tears the stack down."""

    def __init__(self, env: dict[str, str], log_dir: Path, watchdog: Watchdog | None):
        self.env = env
        self.log_dir = log_dir
        self.pid_dir = log_dir.parent / "pids"
        self.pid_dir.mkdir(exist_ok=True)
        self.watchdog = watchdog
        self.procs: dict[str, subprocess.Popen] = {}
        self.started: dict[str, float] = {}
        self.quick_exits: dict[str, int] = {}
        self.due: dict[str, float] = {}
        self.stopping = False
        self._lock = threading.Lock()

    def start(self, name: str) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(CHILDREN[name], env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        if self.watchdog is not None:
            self.watchdog.record(proc.pid)
        self.procs[name] = proc
        self.started[name] = time.monotonic()
        write_atomically(self.pid_dir / f"{name}.pid", str(proc.pid))

    def check(self) -> None:
        """Restart what has exited, once its delay has passed."""
        with self._lock:
            if self.stopping:
                return
            now = time.monotonic()
            for name, proc in list(self.procs.items()):
                if proc.poll() is None:
                    continue
                if name not in self.due:
                    if self.watchdog is not None:
                        self.watchdog.forget(proc.pid)
                    ran = now - self.started[name]
                    quick = 0 if ran >= STEADY_SECONDS else self.quick_exits.get(name, 0)
                    self.quick_exits[name] = quick + 1
                    delay = RESTART_DELAYS[min(quick, len(RESTART_DELAYS) - 1)]
                    self.due[name] = now + delay
                    print(f"minqing: {name} exited with code {proc.returncode}; restarting it in {delay:g}s "
                          f"(log: {self.log_dir / (name + '.log')})", flush=True)
                if now >= self.due[name]:
                    del self.due[name]
                    self.start(name)

    def watch(self, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            self.check()

    def stop_all(self, timeout: float = 15.0) -> None:
        with self._lock:
            self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            if self.watchdog is not None:
                self.watchdog.forget(proc.pid)


def parked_only(body: dict | None) -> list[str]:
    """The followers whose parked or held events are the only thing keeping /health from `ok`.

    Parked events survive restarts (they wait for an operator's `minqing consumer retry`), so they
    must not stop the stack from starting: every process answers, and the operator is told. An empty
    list means the stack is not merely carrying parked events (down, or degraded for another reason)."""
    if not body or body.get("relay", {}).get("status") != "ok":
        return []
    names = []
    for service in (body.get("services") or {}).values():
        if service.get("status") == "ok":
            continue
        checks = service.get("checks") or {}
        bad = {k: c for k, c in checks.items() if c.get("status") != "ok"}
        projection = bad.pop("projection", None)
        if bad or projection is None or not (projection.get("parked") or projection.get("held")):
            return []
        names.append(projection.get("name", service.get("service", "?")))
    return names


def _wait_healthy(port: int, timeout: float, supervisor: Supervisor) -> dict | None:
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        supervisor.check()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:      # 503: degraded; its body says why
            try:
                body = json.loads(exc.read())
            except ValueError:
                body = None
        except Exception:
            body = None
        if body and (body.get("status") == "ok" or parked_only(body)):
            return body
        time.sleep(0.5)
    return body


# ---- publishing at start ----------------------------------------------------------------------------

def publish_at_start(ledger, what: str, stream: str, event_type: str, document: dict, path: Path,
                     publish: Callable, load_command: str) -> str:
    """Publish a document from a file at start — unless an operator has published another version since.

    The rule: the file is published when the county has no version yet, or when the version in force
    was itself published at start (actor `admin:minqing-run`) and the file's content differs from it.
    A version in force that someone else published (`minqing county load`, `minqing assessment rules
    load`) is never replaced at start, whatever the file says: the file is ignored, and this says so.
    Returns the line to print."""
    from minqing import versioned
    published = [e for e in ledger.read_stream(stream) if e.type == event_type]
    if published:
        latest = published[-1]
        version = latest.data["version"]
        if latest.data["digest"] == versioned.digest(document):
            return f"{what}: v{version} in force, same as {path.name}"
        if latest.metadata.actor != START_ACTOR:
            return (f"{what}: v{version} in force (published by {latest.metadata.actor} at "
                    f"{_local_time(latest.recorded_at)}); {path.name} differs and is ignored — "
                    f"to apply it: {load_command} {path}")
    version, _ = publish(ledger, document, actor=START_ACTOR)
    return f"{what}: v{version} published from {path.name}"


def _local_time(recorded_at: str) -> str:
    from zoneinfo import ZoneInfo

    from minqing.clock import parse_instant
    return parse_instant(recorded_at).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M %z")


def publish_files(settings: Settings, ledger) -> bool:
    """Publish the county policies and assessment rules found in the configured directories; print
    what was done for each. False (with the reason on stderr) when a file is invalid."""
    from minqing import county
    from services.assessment import rules
    for path in sorted(settings.counties_dir.glob("*.yaml")):
        try:
            policy = county.read_policy_file(path)
        except county.PolicyError as exc:
            print(f"minqing: {path}: {exc}", file=sys.stderr)
            return False
        name = policy["county"]
        print(publish_at_start(ledger, f"county {name} policy", f"county-{name}", "policy.published", policy, path,
                               county.publish, "minqing county load"), flush=True)
        rules_path = settings.assessment_dir / path.name
        if rules_path.exists():
            try:
                document = rules.read_rules_file(rules_path)
            except rules.RulesError as exc:
                print(f"minqing: {rules_path}: {exc}", file=sys.stderr)
                return False
            print(publish_at_start(ledger, f"county {document['county']} assessment rules",
                                   f"assessment-rules-{document['county']}", "assessment.rules_published",
                                   document, rules_path, rules.publish, "minqing assessment rules load"), flush=True)
    return True


# ---- the run ----------------------------------------------------------------------------------------

def run_stack(settings: Settings) -> int:
    from minqing.commands import engine_and_ledger as _engine_and_ledger
    from minqing.logs import setup_logging

    setup_logging(settings.log_level, "run")
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    from minqing import vault as vault_mod
    try:
        vault_mod.master_keys(settings)     # the services need it: say so once, not in a restart loop
    except vault_mod.VaultError as exc:
        print(f"minqing: configuration error: {exc}", file=sys.stderr)
        return 1
    log_dir = settings.run_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    (settings.run_dir / "pids").mkdir(exist_ok=True)
    lock = RunLock(settings.run_dir)
    refusal = lock.acquire()
    if refusal:
        print(f"minqing: {refusal}", file=sys.stderr)
        return 1
    stack_ports = [settings.http_port, *settings.service_ports.values()]
    placeholders, busy = ports.reserve(stack_ports)
    if busy:
        print(f"minqing: port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use; "
              f"set MINQING_HTTP_PORT to a free base port (the services use the next four)", file=sys.stderr)
        return 1
    relay_metrics, _ = ports.reserve([settings.relay_metrics_port], timeout=0)   # best effort: the relay does without
    placeholders += relay_metrics

    watchdog = Watchdog(settings.run_dir, keep_fds=(lock.fd,))
    broker = None
    supervisor: Supervisor | None = None
    env = dict(os.environ)
    broker_file = settings.run_dir / BROKER_FILE
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if settings.amqp_uri is None:
            from minqing.shell import devstack
            if ports.listening(settings.amqp_port):
                print(f"minqing: port {settings.amqp_port} is in use (another RabbitMQ?); set MINQING_AMQP_PORT "
                      f"to a free port, or MINQING_AMQP_URI to use an existing broker", file=sys.stderr)
                return 1
            missing = devstack.missing_binaries()
            if any(name.startswith("rabbitmq") for name, _ in missing):
                print(f"minqing: RabbitMQ is not installed. Install it with:\n  "
                      f"{devstack.install_command(['rabbitmq-server'])}", file=sys.stderr)
                return 1
            print(f"starting a private RabbitMQ node on 127.0.0.1:{settings.amqp_port} "
                  f"(data in {settings.run_dir}) …", flush=True)
            broker = devstack.RabbitMQ(settings.run_dir, settings.amqp_port, on_spawn=watchdog.record)
            broker.start()
        if not env.get("MINQING_AMQP_URI_FILE"):      # children read the file themselves (never both)
            env["MINQING_AMQP_URI"] = settings.effective_amqp_uri()
        env["MINQING_RUN_DIR"] = str(settings.run_dir)
        if not env.get("MINQING_GATEWAY_SECRET_FILE"):      # a secret from a file is kept; else one per run
            env["MINQING_GATEWAY_SECRET"] = secrets.token_urlsafe(32)
        if not (env.get("MINQING_RATING_LINK_SECRET") or env.get("MINQING_RATING_LINK_SECRET_FILE")):
            kept = settings.run_dir / "rating-link.secret"     # links already sent stay valid across restarts
            if not kept.exists():
                write_atomically(kept, secrets.token_urlsafe(32) + "\n", mode=0o600)
            env["MINQING_RATING_LINK_SECRET_FILE"] = str(kept)
        write_atomically(broker_file, settings.effective_amqp_uri() + "\n", mode=0o600)

        engine, ledger = _engine_and_ledger(settings)     # upgraded by cmd_run (minqing.schema_run)
        if not publish_files(settings, ledger):
            return 1
        supervisor = Supervisor(env, log_dir, watchdog)
        for name in CHILDREN:
            supervisor.start(name)
        health = _wait_healthy(settings.http_port, 90, supervisor)
        if health and health.get("status") != "ok" and parked_only(health):
            print(f"minqing: started, but {', '.join(parked_only(health))} carry parked events; see "
                  f"`minqing consumer parked` and docs/operations.md (Repairing a parked event)", flush=True)
        elif not health or health.get("status") != "ok":
            print(f"minqing: the stack did not become healthy; see the logs in {log_dir}\n"
                  f"{json.dumps(health, ensure_ascii=False, indent=2)}", file=sys.stderr)
            return 1
        threading.Thread(target=supervisor.watch, args=(stop,), daemon=True).start()
        logins = demo_accounts(engine, settings) if embedded(settings) else None
        _print_welcome(settings, log_dir, demo_tokens(engine, settings.run_dir), logins)
        stop.wait()
        print("\nstopping …", flush=True)
        return 0
    finally:
        if supervisor is not None:
            supervisor.stop_all()
        if broker is not None:
            broker.stop()
        broker_file.unlink(missing_ok=True)
        watchdog.close()
        for sock in placeholders:
            sock.close()
        print("stopped.", flush=True)
