"""minqing.config: every bad variable named in one message, secrets from files, ports and addresses."""
from __future__ import annotations

import subprocess
import sys

import pytest

from minqing import config


def test_defaults_are_the_embedded_stack(tmp_path):
    s = config.load({"MINQING_RUN_DIR": str(tmp_path)})
    assert s.embedded and s.listen_address == "127.0.0.1" and s.http_port == 8000
    assert s.service_ports == {"intake": 8001, "routing": 8002, "notify": 8003, "assessment": 8004, "console": 8007}
    assert s.service_address("routing") == ("127.0.0.1", 8002) and s.vault_key_file == tmp_path / "vault.key"


def test_every_bad_variable_is_named_at_once(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        config.load({"MINQING_RUN_DIR": str(tmp_path), "MINQING_HTTP_PORT": "eighty", "MINQING_SWEEP_SECONDS": "0",
                     "MINQING_LOG_LEVEL": "chatty", "MINQING_AMQP_URI": "http://x", "MINQING_ROUTING_PORT": "70000",
                     "MINQING_VAULT_KEY": "k", "MINQING_VAULT_KEY_FILE": "/k",
                     "MINQING_FOLLOW_SECONDS": "0"})
    names = ("MINQING_HTTP_PORT", "MINQING_SWEEP_SECONDS", "MINQING_FOLLOW_SECONDS", "MINQING_LOG_LEVEL", "MINQING_AMQP_URI",
             "MINQING_ROUTING_PORT", "MINQING_VAULT_KEY_FILE")
    assert all(any(n in p for p in err.value.problems) for n in names), err.value.problems
    assert isinstance(err.value, SystemExit) and "MINQING_HTTP_PORT" in str(err.value.code)


def test_follow_seconds_default_and_bounds(monkeypatch):
    monkeypatch.delenv("MINQING_FOLLOW_SECONDS", raising=False)
    assert config.follow_seconds() is None          # unset: 2 s, or 10 s under LISTEN (service_kit)
    monkeypatch.setenv("MINQING_FOLLOW_SECONDS", "0.25")
    assert config.follow_seconds() == 0.25
    monkeypatch.setenv("MINQING_FOLLOW_SECONDS", "61")
    with pytest.raises(config.ConfigError, match="MINQING_FOLLOW_SECONDS"):
        config.follow_seconds()


def test_secrets_from_files(tmp_path):
    (tmp_path / "db").write_text("postgresql://minqing:pw@db.internal/minqing\n")
    (tmp_path / "mq").write_text("amqp://minqing:pw@mq.internal:5672/minqing\n")
    s = config.load({"MINQING_RUN_DIR": str(tmp_path), "MINQING_DATABASE_URL_FILE": str(tmp_path / "db"),
                     "MINQING_AMQP_URI_FILE": str(tmp_path / "mq")})
    assert s.database_url == "postgresql+psycopg://minqing:pw@db.internal/minqing"
    assert s.amqp_uri.endswith("/minqing") and not s.embedded and s.vault_key_file is None
    shown = dict(config.describe(s))
    assert "pw" not in shown["MINQING_DATABASE_URL"] and "pw" not in shown["MINQING_AMQP_URI"]


def test_a_secret_given_twice_or_unreadable_is_named(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        config.load({"MINQING_RUN_DIR": str(tmp_path), "MINQING_DATABASE_URL": "sqlite:///x",
                     "MINQING_DATABASE_URL_FILE": str(tmp_path / "db"), "MINQING_GATEWAY_SECRET_FILE": "/nowhere"})
    assert len(err.value.problems) == 2 and "MINQING_GATEWAY_SECRET_FILE" in err.value.problems[1]


def test_listen_address_ports_and_service_hosts(tmp_path):
    s = config.load({"MINQING_RUN_DIR": str(tmp_path), "MINQING_LISTEN_ADDRESS": "0.0.0.0",
                     "MINQING_INTAKE_PORT": "9100", "MINQING_INTAKE_HOST": "intake.minqing.svc"})
    assert s.listen_address == "0.0.0.0" and s.service_address("intake") == ("intake.minqing.svc", 9100)
    assert s.service_ports["routing"] == 8002


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "minqing.shell.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_config_check_prints_masked_or_problems(tmp_path):
    base = {"PATH": "/usr/bin:/bin", "MINQING_RUN_DIR": str(tmp_path)}
    ok = _cli({**base, "MINQING_GATEWAY_SECRET": "hush-hush"}, "config", "check")
    assert ok.returncode == 0 and "MINQING_LISTEN_ADDRESS" in ok.stdout and "hush-hush" not in ok.stdout
    bad = _cli({**base, "MINQING_HTTP_PORT": "x", "MINQING_DATABASE_URL": "postgresql://u:pw@h/db"}, "config", "check")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "MINQING_HTTP_PORT" in bad.stderr
    nokey = _cli({**base, "MINQING_DATABASE_URL": "postgresql://u:pw@h/db"}, "config", "check")
    assert nokey.returncode == 1 and "MINQING_VAULT_KEY_FILE" in nokey.stderr and "pw" not in nokey.stderr


@pytest.mark.parametrize("args", [["service", "intake"], ["service", "notify"]])
def test_no_vault_key_beside_the_data_on_postgresql(tmp_path, args):
    """A service on PostgreSQL without a vault key refuses to start, naming the variable, before it
    touches the database, and makes no key file in the run directory. (`minqing run` checks the same
    in run_stack, once the database answers.)"""
    env = {"PATH": "/usr/bin:/bin", "MINQING_RUN_DIR": str(tmp_path),
           "MINQING_DATABASE_URL": "postgresql://minqing:pw@127.0.0.1:1/none", "MINQING_AMQP_URI": "amqp://127.0.0.1:1//"}
    result = _cli(env, *args)
    assert result.returncode == 1 and "MINQING_VAULT_KEY_FILE" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr and not (tmp_path / "vault.key").exists()
