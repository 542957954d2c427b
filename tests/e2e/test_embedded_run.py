"""`minqing run` on the embedded default — SQLite ledger, a private RabbitMQ node it starts itself —
reaches healthy, takes a case through to assignment, and stops everything on Ctrl-C; killed with SIGKILL,
it leaves nothing behind, and the next run starts at once and keeps what an operator published."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from minqing.shell import devstack
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
        proc = subprocess.Popen([sys.executable, "-m", "minqing.shell.cli", "run"], env=env, stdout=sink,
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
        # the console's address and a demo login per role, usable at once (no first-login change)
        logins = json.loads((tmp_path / "run" / "demo-accounts.json").read_text())
        assert set(logins) == {"operator", "cadre", "supervisor", "auditor", "admin"}
        assert oct((tmp_path / "run" / "demo-accounts.json").stat().st_mode & 0o777) == "0o600"
        assert f"http://127.0.0.1:{http_port}/console/" in text
        assert all(login["username"] in text and login["password"] in text for login in logins.values())
        from tests.e2e.test_console import Browser
        console = Browser(f"http://127.0.0.1:{http_port}")
        _, page, _ = console.open("/console/login")
        status, page, url = console.open("/console/login", {"csrf": Browser.csrf(page), **{
            "username": logins["supervisor"]["username"], "password": logins["supervisor"]["password"]}})
        assert status == 200 and url.endswith("/console/board") and "督办看板" in page, (status, url)
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


# ---- supervision: kill -9 of `minqing run` (issue #12.4, .10, .11; issue #18.2, .8) -------------------

def _ours(run_dir) -> set[int]:
    """Every live process that belongs to the stack in `run_dir`: its run dir is in its command line or
    its environment (the services' MINQING_RUN_DIR, RabbitMQ's data paths, epmd's HOME)."""
    needle = str(run_dir).encode()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except (OSError, IndexError):
            continue
        if needle in cmdline or needle in environ:
            found.add(int(name))
    return found


def _start_run(env, out, nth: int):
    """Start `minqing run`; return once `out` shows its welcome for the `nth` time."""
    with open(out, "ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "minqing.shell.cli", "run"], env=env, stdout=sink,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 150
    while out.read_text().count("Minqing is running") < nth:
        assert proc.poll() is None, out.read_text()
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.3)
    return proc


def test_kill_9_of_run_leaves_nothing_behind_and_a_fresh_run_keeps_the_operators_policy(tmp_path):
    import threading

    import yaml

    from tests.e2e.conftest import read_pid
    from tests.support import county_dir

    run_dir = tmp_path / "run"
    http_port, amqp_port = free_port_block(), devstack.free_port()
    counties = county_dir(tmp_path / "policies", "deploy/counties/longjiang.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINQING_")}
    env.update(MINQING_RUN_DIR=str(run_dir), MINQING_HTTP_PORT=str(http_port), MINQING_AMQP_PORT=str(amqp_port),
               MINQING_COUNTIES_DIR=str(counties))
    out = tmp_path / "run.out"
    base = f"http://127.0.0.1:{http_port}"
    first = _start_run(env, out, 1)
    second = None
    try:
        assert "county longjiang policy: v1 published from longjiang.yaml" in out.read_text()
        # an operator publishes v2 with the CLI (issue #18.2)
        policy = yaml.safe_load((counties / "longjiang.yaml").read_text())
        policy["name"] = "龙江县（运维发布）"
        edited = tmp_path / "policies" / "edited" / "longjiang.yaml"
        edited.parent.mkdir()
        edited.write_text(yaml.safe_dump(policy, allow_unicode=True))   # same depth: ../calendars/ still resolves
        loaded = subprocess.run([sys.executable, "-m", "minqing.shell.cli", "county", "load", str(edited)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert loaded.returncode == 0 and "version 2" in loaded.stdout, loaded.stdout + loaded.stderr
        # `events tail --broker` finds the private broker without MINQING_AMQP_PORT (issue #18.8)
        shell = {k: v for k, v in env.items() if k != "MINQING_AMQP_PORT"}
        tail = subprocess.Popen([sys.executable, "-m", "minqing.shell.cli", "events", "tail", "--broker"], env=shell,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = []
        threading.Thread(target=lambda: lines.extend(tail.stdout), daemon=True).start()
        operator = json.loads((run_dir / "demo-tokens.json").read_text())["operator"]
        report = json.dumps({"county": "longjiang", "channel": "hotline", "category": "202", "summary": "路面破损",
                             "location": {"township": "山泉镇", "village": "平安村"},
                             "reporter": {"name": "孙八", "phone": "13600003333"}}, ensure_ascii=False).encode()
        deadline = time.monotonic() + 60
        while not any(b"case.reported" in line for line in lines):
            assert tail.poll() is None, tail.stderr.read().decode()
            assert time.monotonic() < deadline, "events tail --broker showed nothing"
            urllib.request.urlopen(urllib.request.Request(
                base + "/api/v1/cases", data=report, method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {operator}"}), timeout=30)
            time.sleep(5)
        tail.send_signal(signal.SIGINT)
        tail.wait(20)
        assert b"Traceback" not in tail.stderr.read()

        stack = _ours(run_dir)
        children = {name: read_pid(run_dir / "pids" / f"{name}.pid")
                    for name in ("relay", "intake", "routing", "notify", "assessment", "gateway")}
        assert set(children.values()) <= stack and first.pid in stack
        assert len(stack) > len(children) + 1, "the private RabbitMQ node is not among the stack's processes"

        first.kill()                                                   # kill -9 of `minqing run`
        first.wait(10)
        deadline = time.monotonic() + 30
        while _ours(run_dir):
            assert time.monotonic() < deadline, f"left behind: {_ours(run_dir)}"
            time.sleep(0.2)
        for port in (http_port, http_port + 1, http_port + 4, amqp_port):
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", port)) != 0, f"127.0.0.1:{port} still answers"

        # a service port briefly taken by someone else (as by an outgoing connection) does not stop the start
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", http_port + 2))
        threading.Timer(3.0, squatter.close).start()
        started = time.monotonic()
        second = _start_run(env, out, 2)
        assert time.monotonic() - started < 90
        text = out.read_text().split("Minqing is running")[1]
        assert "county longjiang policy: v2 in force (published by admin:" in text, out.read_text()
        assert _get(f"{base}/api/v1/counties/longjiang")["policy_version"] == 2

        # the gateway is supervised like the services: killed, it is started again
        os.kill(read_pid(run_dir / "pids" / "gateway.pid"), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(base + "/health")["status"] == "ok":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the gateway was not restarted"
            time.sleep(0.3)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
    assert second.returncode == 0, out.read_text()
    assert not (run_dir / "broker.uri").exists()
    deadline = time.monotonic() + 15
    while _ours(run_dir):
        assert time.monotonic() < deadline, f"left behind after Ctrl-C: {_ours(run_dir)}"
        time.sleep(0.2)
