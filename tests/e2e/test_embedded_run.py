"""`minqing run` on the embedded default — SQLite ledger, a private RabbitMQ node it starts itself —
reaches healthy, takes a case through to assignment, and stops everything on Ctrl-C; killed with SIGKILL,
it leaves nothing behind, and the next run starts at once and keeps what an operator published — and
the README's first hour (report, track, accept | restart | resolve, rate, scorecard) works across it
at 02:00 China time (issue #18's done-when)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from minqing.shell import devstack


def _get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_embedded_stack_runs_and_stops_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINQING_")}
    env.update(MINQING_RUN_DIR=str(tmp_path / "run"))
    out = tmp_path / "run.out"
    proc, http_port, amqp_port = _run_on_free_ports(env, out)
    try:
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

def _call(method, url, token=None, body=None):
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers),
                                    timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _until(what, probe, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


# The README's first hour, as written there (issue #18's done-when): report, track and accept before a
# restart; resolve, rate and the scorecard after it. The stack runs on the demo clock from 02:00 on
# 1 December in China — 18:00 on 30 November in UTC — inside quiet hours.
NIGHT = "2026-12-01T02:00+08:00"
README_REPORT = {"county": "longjiang", "channel": "hotline", "category": "202",
                 "summary": "黄牛场通往11屯的道路水毁严重，车辆无法通行",
                 "location": {"township": "黑岗乡", "village": "靠山村", "hamlet": "靠山村11屯"},
                 "reporter": {"name": "张三", "phone": "13800138000"}}


def _first_hour_before_restart(base, tokens) -> dict:
    code, made = _call("POST", f"{base}/api/v1/cases", tokens["operator"], README_REPORT)
    assert code == 201 and made["status"] == "reported", made
    assert made["tracking_no"].startswith("LJ-20261201-")           # China's date, not UTC's 30 November
    view = _until("the assignment", lambda: (v := _call("GET", f"{base}/api/v1/cases/{made['case_id']}",
                                                        tokens["operator"])[1])["status"] == "assigned" and v)
    assert view["assignment"]["cadre"] == "lj-c002" and view["reported_at"].startswith("2026-12-01T02:0"), view
    code, tracked = _call("GET", f"{base}/api/v1/track/{made['tracking_no']}?pin={made['pin']}")
    assert code == 200 and tracked["status"] == "assigned" and tracked["reported_at"].endswith("+08:00"), tracked
    code, body = _call("POST", f"{base}/api/v1/cases/{made['case_id']}/accept", tokens["cadre"], {})
    assert code == 200 and body["status"] == "accepted", body
    return made


def _first_hour_after_restart(base, tokens, made) -> None:
    case = f"{base}/api/v1/cases/{made['case_id']}"
    code, body = _call("POST", f"{case}/resolve", tokens["cadre"],
                       {"resolution": "已组织抢修，道路恢复通行", "on_site": True})
    assert code == 200 and body["status"] == "resolved", body
    code, body = _call("POST", f"{case}/follow-up", tokens["operator"],
                       {"rating": "satisfied", "via": "call", "solved": True})
    assert code == 201, body
    card = _until("the scorecard with the rating", lambda: (c := _call(
        "GET", f"{base}/api/v1/assessment/longjiang/cadres/lj-c002", tokens["auditor"])[1])["cards"][0]["counts"]["satisfied"]
        and c)
    assert card["period"] == "2026-12", card                          # this month in China (UTC: November)
    assert card["cards"][0]["counts"]["received"] == 1 and card["cards"][0]["rates"]["satisfaction_rate"] == 1.0
    code, tracked = _call("GET", f"{base}/api/v1/track/{made['tracking_no']}?pin={made['pin']}")
    assert code == 200 and tracked["status"] in ("followed_up", "closed"), tracked
    assert all(h["at"].startswith("2026-12-01T02:") for h in tracked["history"]), tracked["history"]


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


def _run_on_free_ports(env, out, attempts: int = 3):
    """`minqing run` on a free block of ports; returns (process, HTTP base port, AMQP port). The block
    lies below the kernel's ephemeral range (devstack.free_port), so no outgoing connection takes
    one of its ports — not before the first start, and not between a kill and the restart on the
    same ports; another test's listener still may: then run refuses to start ("are in use") and a
    new block is tried, as tests.e2e.conftest.start_on_free_ports does for the test stacks."""
    for attempt in range(attempts):
        http_port, amqp_port = devstack.free_port_block(8), devstack.free_port()
        env.update(MINQING_HTTP_PORT=str(http_port), MINQING_AMQP_PORT=str(amqp_port))
        start = out.stat().st_size if out.exists() else 0
        try:
            return _start_run(env, out, 1), http_port, amqp_port
        except AssertionError:
            if "are in use" not in out.read_text()[start:] or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def test_kill_9_of_run_leaves_nothing_behind_and_a_fresh_run_keeps_the_operators_policy(tmp_path):
    import threading

    import yaml

    from tests.e2e.conftest import read_pid
    from tests.support import county_dir

    run_dir = tmp_path / "run"
    counties = county_dir(tmp_path / "policies", "deploy/counties/longjiang.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINQING_")}
    env.update(MINQING_RUN_DIR=str(run_dir), MINQING_COUNTIES_DIR=str(counties), MINQING_CLOCK="demo",
               MINQING_CLOCK_START=NIGHT, MINQING_CLOCK_RATE="1")
    out = tmp_path / "run.out"
    first, http_port, amqp_port = _run_on_free_ports(env, out)
    base = f"http://127.0.0.1:{http_port}"
    second = None
    try:
        assert "county longjiang policy: v1 published from longjiang.yaml" in out.read_text()
        assert "demo clock: 2026-12-01 02:00:00 CST Asia/Shanghai" in out.read_text()
        walk = _first_hour_before_restart(base, json.loads((run_dir / "demo-tokens.json").read_text()))
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
        # the README's first hour goes on after the restart, with the same demo tokens
        _first_hour_after_restart(base, json.loads((run_dir / "demo-tokens.json").read_text()), walk)

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
