"""The restore drill (issue #15 item 7), on PostgreSQL and on SQLite, entirely through the CLI an
operator uses: cases written and routed (some overdue and escalated), the head published
(`minqing audit head`), `minqing db backup`, the database destroyed, `minqing db restore`, then
`minqing audit verify --expect-head POSITION:HASH` passes and `minqing consumer rebuild
routing.assignments` answers exactly as routing did before the loss."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from minqing.db import make_engine
from services.routing.tables import cases_table, timers_table
from tests.interface.routing_world import RoutingWorld

START = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)
PLACES = [("heigang", "heigang.kaoshan", "heigang.kaoshan.11"), ("shanquan", "shanquan.pingan", "shanquan.pingan.1"),
          ("longjiang-zhen", "longjiang-zhen.dongsheng", None), ("qikeshu", "qikeshu.qikeshu", "qikeshu.qikeshu.1")]


def _cli(env, *args, check=True):
    result = subprocess.run([sys.executable, "-m", "minqing.shell.cli", *args], env=env, capture_output=True, text=True,
                            timeout=300)
    if check:
        assert result.returncode == 0, f"minqing {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result


def _answers(url: str) -> dict:
    """What routing answers from its tables: every case's state and every pending timer."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {"cases": [tuple(r) for r in conn.execute(select(cases_table).order_by(cases_table.c.case_id))],
                    "timers": sorted(tuple(map(str, r)) for r in conn.execute(select(timers_table)))}
    finally:
        engine.dispose()


def _write_cases(url: str) -> int:
    world = RoutingWorld(url, START)
    try:
        for i in range(24):
            township, village, hamlet = PLACES[i % len(PLACES)]
            world.report("longjiang", ["101", "201", "301", "901"][i % 4], township, village, hamlet,
                         at=START + timedelta(hours=i))
        world.at(START + timedelta(days=12))          # deadlines lapse: warnings, overdue marks, escalations
        types = {e.type for e in world.ledger.iter_all()}
        assert {"case.assigned", "case.overdue"} <= types, types
        return sum(1 for _ in world.ledger.iter_all())
    finally:
        world.close()


def _drill(url: str, tmp_path: Path, destroy) -> None:
    events = _write_cases(url)
    before = _answers(url)
    assert len(before["cases"]) == 24
    env = {**os.environ, "MINQING_DATABASE_URL": url, "MINQING_RUN_DIR": str(tmp_path / "run")}
    head = json.loads(_cli(env, "audit", "head").stdout)
    assert head["position"] == events

    backup_file = tmp_path / "backups" / "minqing.backup"
    _cli(env, "db", "backup", "--out", str(backup_file))
    assert backup_file.stat().st_size > 0 and (backup_file.stat().st_mode & 0o077) == 0
    refused = _cli(env, "db", "backup", "--out", str(backup_file), check=False)
    assert refused.returncode != 0 and "exists" in refused.stderr        # never overwritten

    destroy()
    gone = _cli(env, "db", "current", check=False)                      # truly empty now: every command
    assert gone.returncode == 1 and json.loads(gone.stdout)["state"] == "empty"   # refuses it

    _cli(env, "db", "restore", str(backup_file))
    verified = _cli(env, "audit", "verify", "--expect-head", f"{head['position']}:{head['hash']}")
    assert f"{events} events verified" in verified.stdout
    wrong = _cli(env, "audit", "verify", "--expect-head", f"{head['position']}:{'0' * 64}", check=False)
    assert wrong.returncode == 3

    assert _answers(url) == before                                      # the restored tables themselves
    rebuilt = _cli(env, "consumer", "rebuild", "routing.assignments")
    assert f"up to position {events}" in rebuilt.stdout
    assert _answers(url) == before                                      # and the projection replayed


def test_restore_drill_on_postgresql(postgres, pg_url, tmp_path):
    name = make_url(pg_url).database

    def destroy():
        postgres.drop_database(name)
        postgres.create_database(name)         # an empty database, as `createdb` gives a rebuilt server

    _drill(pg_url, tmp_path, destroy)


def test_restore_drill_on_sqlite(tmp_path):
    path = tmp_path / "data" / "minqing.db"
    path.parent.mkdir()
    url = f"sqlite:///{path}"

    def destroy():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    _drill(url, tmp_path, destroy)


def test_print_shows_the_pg_dump_command_without_the_password(tmp_path):
    env = {**os.environ, "MINQING_DATABASE_URL": "postgresql://minqing:s3cret-pw@db.internal:5433/county",
           "MINQING_RUN_DIR": str(tmp_path)}
    shown = _cli(env, "db", "backup", "--out", str(tmp_path / "x.dump"), "--print").stdout
    assert "pg_dump --format=custom" in shown and "PGHOST=db.internal" in shown and "PGPORT=5433" in shown
    assert "s3cret-pw" not in shown and "PGPASSWORD=***" in shown


@pytest.mark.parametrize("content", [b"not a database at all", b""])
def test_sqlite_restore_refuses_a_file_that_is_not_a_backup(tmp_path, content):
    bogus = tmp_path / "bogus.backup"
    bogus.write_bytes(content)
    env = {**os.environ, "MINQING_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}", "MINQING_RUN_DIR": str(tmp_path)}
    refused = _cli(env, "db", "restore", str(bogus), check=False)
    assert refused.returncode == 1 and "not a SQLite backup" in refused.stderr
