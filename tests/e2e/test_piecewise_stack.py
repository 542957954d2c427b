"""Issue #15's "done when": a stack started piece by piece from the commands the systemd units run
(`minqing gateway`, `minqing relay`, `minqing service NAME` — not `minqing run`), on PostgreSQL, with
every secret read from a `*_FILE`, behind a real nginx serving deploy/nginx/minqing.conf (rendered for
loopback, with a self-signed certificate), passes the case flow: a resident's report is assigned, the
cadre accepts and resolves it, and the resident tracks it to the end with their PIN.

The services listen on 127.0.0.2 (MINQING_LISTEN_ADDRESS) and the gateway finds them there through
MINQING_<NAME>_HOST, at ports set one by one (MINQING_<NAME>_PORT): the gateway does not assume the
services share its loopback address or its port block.
"""
from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time

import pytest

from minqing.shell import devstack
from tests.deploy.test_nginx import NGINX, _render, _self_signed
from tests.e2e.test_case_flow import report
from tests.support import county_dir, private_vhost

SERVICES = ("intake", "routing", "notify", "assessment", "console")
VILLAGE = ("cadre", "longjiang", "heigang.kaoshan-station", "lj-c002")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx missing: run deploy/local/install-debian-deps.sh")


def _cli(env, *args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "minqing.shell.cli", *args], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def _secret(directory, name: str, value: str) -> str:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return str(path)


@pytest.fixture(scope="module")
def piecewise(tmp_path_factory, postgres, rabbit):
    base = tmp_path_factory.mktemp("piecewise")
    secrets, logs, tls = base / "credentials", base / "logs", base / "tls"
    for d in (secrets, logs, tls):
        d.mkdir()
    counties = county_dir(base / "policies", "deploy/counties/longjiang.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINQING_")}
    env.update({
        "MINQING_RUN_DIR": str(base / "state"),
        "MINQING_COUNTIES_DIR": str(counties),
        "MINQING_DATABASE_URL_FILE": _secret(secrets, "database-url", postgres.create_database("e2e_piecewise")),
        "MINQING_AMQP_URI_FILE": _secret(secrets, "amqp-uri", private_vhost(rabbit)),
        "MINQING_GATEWAY_SECRET_FILE": _secret(secrets, "gateway-secret", os.urandom(16).hex()),
        "MINQING_VAULT_KEY_FILE": str(secrets / "vault-key"),
        "MINQING_HTTP_PORT": str(devstack.free_port()),
        "MINQING_RELAY_METRICS_PORT": str(devstack.free_port()),
        "MINQING_SWEEP_SECONDS": "1",
        "MINQING_NOTIFY_SECONDS": "0.3",
    })
    for name in SERVICES:
        env[f"MINQING_{name.upper()}_PORT"] = str(devstack.free_port("127.0.0.2"))
        env[f"MINQING_{name.upper()}_HOST"] = "127.0.0.2"
    _cli(env, "vault", "keygen", "--out", env["MINQING_VAULT_KEY_FILE"])
    checked = _cli(env, "config", "check").stdout
    assert "127.0.0.2" in checked and env["MINQING_GATEWAY_SECRET_FILE"] not in checked
    _cli(env, "db", "upgrade")
    _cli(env, "county", "load", str(counties / "longjiang.yaml"))

    commands = {name: ["service", name] for name in SERVICES}
    commands.update(relay=["relay"], gateway=["gateway"])
    procs = {}
    for name, args in commands.items():
        own = {**env, "MINQING_LISTEN_ADDRESS": "127.0.0.1" if name in ("gateway", "relay") else "127.0.0.2"}
        with open(logs / f"{name}.log", "wb") as out:
            procs[name] = subprocess.Popen([sys.executable, "-m", "minqing.shell.cli", *args], env=own,
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    _self_signed(tls)
    http_port, https_port = devstack.free_port(), devstack.free_port()
    conf = _render(tls, int(env["MINQING_HTTP_PORT"]), http_port, https_port)
    procs["nginx"] = subprocess.Popen([NGINX, "-p", str(tls), "-c", conf], stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(tls / "cert.pem"))
    context.check_hostname = False
    front = Front(https_port, context, env)
    try:
        front.wait_healthy(procs, logs)
        yield front
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


class Front:
    """HTTPS requests to nginx, the stack's only door in this test."""

    def __init__(self, port: int, context, env: dict):
        self.port, self.context, self.env = port, context, env

    def request(self, method: str, path: str, body=None, token: str | None = None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=30)
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        try:
            conn.request(method, path, body=json.dumps(body, ensure_ascii=False).encode() if body is not None else None,
                         headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, json.loads(payload) if payload.startswith((b"{", b"[")) else payload
        finally:
            conn.close()

    def wait_healthy(self, procs, logs, timeout: float = 120) -> None:
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            dead = [n for n, p in procs.items() if p.poll() is not None]
            assert not dead, f"{dead} exited: " + "".join((logs / f"{n}.log").read_text(errors="replace")[-2000:]
                                                          for n in dead if (logs / f"{n}.log").exists())
            try:
                code, last = self.request("GET", "/health")
                if code == 200 and last["status"] == "ok":
                    return
            except (OSError, ssl.SSLError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"the piecewise stack did not become healthy: {last}")

    def issue(self, role: str, county: str = "longjiang", unit: str | None = None, cadre: str | None = None) -> str:
        from minqing import access, config
        from minqing.db import make_engine
        engine = make_engine(config.load(self.env).database_url)
        try:
            return access.issue_token(engine, role, county, unit=unit, cadre=cadre, label="piecewise test")[1]
        finally:
            engine.dispose()

    def wait_status(self, case_id: str, status: str, token: str, timeout: float = 30) -> dict:
        deadline, body = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            code, body = self.request("GET", f"/api/v1/cases/{case_id}", token=token)
            if code == 200 and body["status"] == status:
                return body
            time.sleep(0.2)
        raise AssertionError(f"case {case_id} did not reach {status}: {body}")


def test_every_piece_answers_behind_nginx(piecewise):
    code, health = piecewise.request("GET", "/health")
    assert code == 200 and set(health["services"]) == set(SERVICES) and health["relay"]["status"] == "ok"
    assert piecewise.request("GET", "/metrics")[0] == 404          # never public through nginx


def test_report_assign_accept_resolve_tracked_by_the_resident(piecewise):
    operator, village = piecewise.issue("operator"), piecewise.issue(*VILLAGE)
    code, case = piecewise.request("POST", "/api/v1/cases", report(), token=operator)
    assert code == 201, case
    case_id, tracking_no, pin = case["case_id"], case["tracking_no"], case["pin"]

    assigned = piecewise.wait_status(case_id, "assigned", operator)      # relay → broker → routing
    assert assigned["status"] == "assigned"
    code, body = piecewise.request("POST", f"/api/v1/cases/{case_id}/accept", {}, token=village)
    assert code == 200 and body["events"] == ["case.accepted"], body
    code, body = piecewise.request("POST", f"/api/v1/cases/{case_id}/resolve",
                                   {"resolution": "道路已抢修，恢复通行"}, token=village)
    assert code == 200 and body["status"] == "resolved", body

    deadline, tracked = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        code, tracked = piecewise.request("GET", f"/api/v1/track/{tracking_no}?pin={pin}")
        if code == 200 and tracked["status"] == "resolved":
            break
        time.sleep(0.2)
    assert code == 200 and tracked["status"] == "resolved", tracked
    assert piecewise.request("GET", f"/api/v1/track/{tracking_no}?pin={int(pin) ^ 1:06d}")[0] in (403, 404)
