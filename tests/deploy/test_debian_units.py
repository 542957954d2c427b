"""The systemd units for one Debian 12 server (deploy/debian): `systemd-analyze verify` on each,
with /opt/minqing/venv pointed at this checkout's venv (verify checks that ExecStart exists), and the
properties a county relies on: a dedicated user, the environment file, secrets by LoadCredential,
restart on failure, hardening."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minqing.shell.runner import CHILDREN
from tests.deploy.metrics import ROOT

DEBIAN = ROOT / "deploy" / "debian"
SERVICES = ["minqing-relay.service", "minqing@.service", "minqing-gateway.service", "minqing-exporter.service"]
VENV = Path(sys.executable).parent.parent


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    text = (DEBIAN / name).read_text()
    # configparser keeps only the last of repeated keys; join them as systemd accumulates them
    seen: dict[tuple[str, str], list[str]] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#") and section:
            key, _, value = line.partition("=")
            seen.setdefault((section, key), []).append(value)
    parser.read_string(text)
    parser.repeated = seen
    return parser


@pytest.mark.parametrize("name", SERVICES)
def test_units_run_as_a_dedicated_user_with_credentials_and_hardening(name):
    unit = _unit(name)
    service = unit["Service"]
    assert service["User"] == "minqing" and service["Group"] == "minqing"
    assert service["EnvironmentFile"] == "/etc/minqing/minqing.env"
    assert service["Restart"] == "on-failure"
    creds = unit.repeated[("Service", "LoadCredential")]
    assert any(c.startswith("database-url:/etc/minqing/credentials/") for c in creds)
    envs = unit.repeated[("Service", "Environment")]
    assert "MINQING_DATABASE_URL_FILE=%d/database-url" in envs
    for option in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "RestrictAddressFamilies",
                   "SystemCallFilter", "CapabilityBoundingSet"):
        assert option in service, f"{name} lacks {option}"
    assert service["ProtectSystem"] == "strict" and service["StateDirectory"] == "minqing"
    assert unit["Install"]["WantedBy"] == "minqing.target"


def test_every_process_of_the_stack_has_a_unit():
    """The services minqing run starts (runner.CHILDREN) are the template's instances, the target wants each."""
    assert _unit("minqing@.service")["Service"]["ExecStart"].endswith("/bin/minqing service %i")
    wants = _unit("minqing.target")["Unit"]["Wants"].split()
    services = [n for n in CHILDREN if n not in ("relay", "gateway")]
    assert sorted(wants) == sorted(["minqing-relay.service", "minqing-gateway.service", "minqing-exporter.service",
                                    *(f"minqing@{n}.service" for n in services)])
    assert "minqing relay" in _unit("minqing-relay.service")["Service"]["ExecStart"]
    assert _unit("minqing-gateway.service")["Service"]["ExecStart"].endswith("/bin/minqing gateway")
    # the same commands `minqing run` starts
    assert all(CHILDREN[n][-2:] == ["service", n] for n in services)


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd): the structural checks above still ran")
    names = [*SERVICES, "minqing.target"]
    for name in names:
        text = (DEBIAN / name).read_text().replace("/opt/minqing/venv", str(VENV))
        (tmp_path / name).write_text(text)
    (tmp_path / "minqing@intake.service").symlink_to(tmp_path / "minqing@.service")
    if not (VENV / "bin" / "minqing").exists():
        pytest.fail(f"{VENV}/bin/minqing missing: run make deps")
    result = subprocess.run([analyze, "verify", "--man=no", *(str(tmp_path / n) for n in
                            ["minqing-relay.service", "minqing-gateway.service", "minqing@intake.service",
                             "minqing-exporter.service",
                             "minqing.target"])], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "minqing" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_environment_file_holds_no_secret():
    text = (DEBIAN / "minqing.env").read_text()
    for secret in ("MINQING_DATABASE_URL=", "MINQING_AMQP_URI=", "MINQING_VAULT_KEY=", "PASSWORD="):
        assert secret not in text
