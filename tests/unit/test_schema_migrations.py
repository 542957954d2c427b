"""Schema migrations (issue #15 item 3), on SQLite: the migrations' head is the models' schema, and
every process refuses a database older (or newer) than its code, naming `minqing db upgrade`;
`minqing run` upgrades its own database and says so. The upgrade of a real database from the previous
release, on both backends, is tests/deploy/test_schema_upgrade.py."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, text

from minqing import schema
from minqing.db import make_engine
from minqing.ledger import metadata_obj as ledger_tables


def models_metadata() -> MetaData:
    md = MetaData()
    for part in schema.models():
        for table in part.tables.values():
            table.to_metadata(md)
    return md


def differences(engine) -> list:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), models_metadata())
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name == schema.VERSION_TABLE)]


@pytest.fixture
def engine(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'minqing.db'}")
    yield eng
    eng.dispose()


def test_the_migrations_head_is_exactly_the_models(engine):
    assert schema.state(engine).kind == "empty"
    before, top = schema.upgrade(engine)
    assert (before.kind, top) == ("empty", schema.head())
    assert differences(engine) == []                 # tables, columns, types, nullability, indexes
    assert schema.state(engine).kind == "current"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT position, hash FROM ledger_head")).all() == [(0, "0" * 64)]


def test_every_process_refuses_a_database_older_than_its_code_naming_the_command(engine):
    with pytest.raises(schema.SchemaError, match="empty.*run `minqing db upgrade`"):
        schema.require_current(engine, "minqing service intake")
    ledger_tables.create_all(engine)                 # what a release before migrations left
    with pytest.raises(schema.SchemaError, match=r"made before migrations.*minqing db upgrade.*\"Upgrade\""):
        schema.require_current(engine)
    schema.upgrade(engine)
    schema.require_current(engine)
    with engine.begin() as conn:                     # written by a newer release, then rolled back
        conn.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(schema.SchemaError, match="9999, which this code does not know"):
        schema.require_current(engine)
    with pytest.raises(schema.SchemaError, match="cannot upgrade"):
        schema.upgrade(engine)


def test_a_service_and_the_gateway_stop_at_start_with_the_command_to_run(tmp_path):
    """Before touching the broker (none listens at the URI): the message, exit 78 (EX_CONFIG, which the
    systemd units do not restart on), no traceback."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    eng = make_engine(url)
    ledger_tables.create_all(eng)
    eng.dispose()
    env = {**os.environ, "MINQING_DATABASE_URL": url, "MINQING_RUN_DIR": str(tmp_path / "run"),
           "MINQING_AMQP_URI": "amqp://guest:guest@127.0.0.1:9//", "MINQING_VAULT_KEY": "",
           "MINQING_VAULT_KEY_FILE": ""}
    for command in (["-m", "minqing.shell.service_main", "intake"], ["-m", "minqing.shell.cli", "gateway"]):
        done = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == schema.REFUSED_EXIT == 78, (command, done.stdout, done.stderr)
        assert "made before migrations" in done.stderr and "run `minqing db upgrade`" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_minqing_run_upgrades_its_own_database_and_says_so(tmp_path, capsys):
    from minqing.config import Settings
    from minqing.schema_run import upgrade_own_database
    settings = Settings(run_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'minqing.db'}", amqp_uri=None,
                        amqp_port=0, http_port=0, counties_dir=tmp_path, assessment_dir=tmp_path, log_level="INFO")
    assert upgrade_own_database(settings)
    assert f"database schema created at {schema.head()}" in capsys.readouterr().out
    assert upgrade_own_database(settings)
    assert capsys.readouterr().out == ""             # nothing to say when it is current
