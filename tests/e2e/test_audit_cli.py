"""`minqing audit verify` on a real PostgreSQL history: exit 0 when intact; non-zero naming the
position after one row is edited in the database."""
import json
import os
import subprocess
import sys

from sqlalchemy import text

from minqing.db import make_engine
from minqing.ledger import Ledger
from minqing.service_kit import create_tables
from tests.conftest import note


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "minqing.shell.cli", *args], env=env, capture_output=True, text=True,
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
    anchor = json.loads(head.stdout)
    assert _cli(env, "audit", "verify", "--expect-head", f"50:{anchor['hash']}").returncode == 0
    assert _cli(env, "audit", "verify", "--expect-head", f"50:{'f' * 64}").returncode == 3

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


def test_rebuilding_a_projection_reproduces_it(pg_url, tmp_path):
    """Projections are disposable (principle 6): the CLI rebuild gives back the same scorecards."""
    from sqlalchemy import text as sql
    from minqing.consumer import Follower
    from services.assessment.projection import AssessmentFacts
    from services.assessment.tables import metadata_obj
    engine = make_engine(pg_url)
    create_tables(engine, metadata_obj)
    ledger = Ledger(engine)
    from minqing.ledger import Metadata, NewEvent
    meta = Metadata(actor="test", county="longjiang")
    for i in range(30):
        ledger.append(f"case-{i}", [NewEvent("case.assigned", {
            "case_id": str(i), "unit": "u1", "cadre": f"c{i % 3}", "tier": "village",
            "response_due": "2026-01-02T00:00:00.000000Z", "resolution_due": "2099-01-01T00:00:00.000000Z",
            "policy_version": 1, "rule": "r"}, meta)])
        if i % 2:
            ledger.append(f"case-{i}", [NewEvent("case.resolved", {
                "case_id": str(i), "cadre": f"c{i % 3}", "unit": "u1", "on_site": False, "resolution": "ok"}, meta)])
    Follower(ledger, AssessmentFacts()).catch_up()
    query = ("SELECT subject, metric, count(*), min(position) FROM assessment_facts WHERE kind = 'cadre' "
             "GROUP BY subject, metric ORDER BY subject, metric")
    with engine.connect() as conn:
        before = conn.execute(sql(query)).all()
    env = {**os.environ, "MINQING_DATABASE_URL": pg_url, "MINQING_RUN_DIR": str(tmp_path)}
    result = _cli(env, "consumer", "rebuild", "assessment.facts")
    assert result.returncode == 0, result.stderr
    with engine.connect() as conn:
        after = conn.execute(sql(query)).all()
    engine.dispose()
    assert after == before and {row[0] for row in before} == {"c0", "c1", "c2"}
    refused = _cli(env, "consumer", "rebuild", "notify.rules")
    assert refused.returncode == 1 and "send every notification again" in refused.stderr


def test_token_lifecycle_through_the_cli(pg_url, tmp_path):
    """Issued once (printed, stored only as a hash), listed without secrets, revoked."""
    from pathlib import Path
    from minqing import access
    from minqing.db import read_transaction
    from minqing.http import ApiError
    env = {**os.environ, "MINQING_DATABASE_URL": pg_url, "MINQING_RUN_DIR": str(tmp_path)}
    policy = Path(__file__).resolve().parents[2] / "deploy" / "counties" / "longjiang.yaml"
    assert _cli(env, "db", "upgrade").returncode == 0           # a new database: its tables come from migrations
    assert _cli(env, "county", "load", str(policy)).returncode == 0
    bad = _cli(env, "token", "issue", "--role", "cadre", "--county", "longjiang", "--cadre", "nobody")
    assert bad.returncode == 1 and "--cadre" in bad.stderr
    issued = _cli(env, "token", "issue", "--role", "cadre", "--county", "longjiang", "--cadre", "lj-c002")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    token_id = token[3:].split(".")[0]
    listed = _cli(env, "token", "list", "--county", "longjiang")
    assert token_id in listed.stdout and token.split(".")[1] not in listed.stdout and "heigang.kaoshan-station" in listed.stdout
    row = next(json.loads(line) for line in listed.stdout.splitlines() if token_id in line)
    # times as people read them (issue #18.1): the county's zone, stored UTC
    assert row["created_at"].endswith("+08:00") and row["expires_at"].endswith("+08:00"), row
    engine = make_engine(pg_url)
    with read_transaction(engine) as conn:
        principal = access.authenticate(conn, f"Bearer {token}")
    assert (principal.role, principal.unit, principal.cadre) == ("cadre", "heigang.kaoshan-station", "lj-c002")
    with engine.begin() as conn:
        access.record_access(conn, principal, "longjiang", "c-local", "case.read")
        stored = conn.execute(text("SELECT at FROM access_log WHERE case_id = 'c-local'")).scalar()
    read = _cli(env, "access", "log", "--county", "longjiang", "--case-id", "c-local")
    shown = json.loads(read.stdout.splitlines()[0])
    assert stored.endswith("Z") and shown["at"].endswith("+08:00") and shown["actor"] == "cadre:lj-c002", (stored, shown)
    assert _cli(env, "token", "revoke", token_id).returncode == 0
    with read_transaction(engine) as conn:
        try:
            access.authenticate(conn, f"Bearer {token}")
            raise AssertionError("a revoked token still works")
        except ApiError as exc:
            assert exc.status == 401
    engine.dispose()
