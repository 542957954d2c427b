"""`minqing audit verify` on a real PostgreSQL history: exit 0 when intact; non-zero naming the
position after one row is edited in the database."""
import os
import subprocess
import sys

from sqlalchemy import text

from minqing.db import make_engine
from minqing.ledger import Ledger
from minqing.service_kit import create_tables
from tests.conftest import note


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "minqing.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_audit_verify_passes_then_locates_an_edit(pg_url, tmp_path):
    engine = make_engine(pg_url)
    create_tables(engine)
    ledger = Ledger(engine)
    for i in range(50):
        ledger.append(f"case-{i % 5}", [note(str(i % 5), f"#{i}")])
    env = {**os.environ, "MINQING_DATABASE_URL": pg_url, "MINQING_RUN_DIR": str(tmp_path)}

    ok = _cli(env, "audit", "verify")
    assert ok.returncode == 0 and "OK: 50 events verified" in ok.stdout
    head = _cli(env, "audit", "head")
    assert '"position": 50' in head.stdout

    with engine.begin() as conn:
        conn.execute(text("UPDATE ledger_events SET data = replace(data, '#37', '#73') WHERE position = 38"))
    engine.dispose()
    bad = _cli(env, "audit", "verify")
    assert bad.returncode != 0
    assert "FAILED at position 38" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_refuses_a_broken_policy_file_naming_each_error(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("county: Not Valid\nname: x\ntiers: [hamlet]\n", encoding="utf-8")
    env = {**os.environ, "MINQING_RUN_DIR": str(tmp_path)}
    result = _cli(env, "county", "check", str(broken))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    for path in ("county:", "tiers:", "townships:", "units:", "cadres:", "categories:", "tracking_prefix:"):
        assert path in result.stderr
