"""Schema migrations (issue #15 item 3): a database written by the previous release — main at b6c66ba,
before migrations, tables made by create_all — is upgraded by `minqing db upgrade` and nothing is lost.

The fixtures in tests/fixtures/previous_release/ were produced by that release's own code, not by
this one (see its README.md): `b6c66ba-sqlite.sql.gz` is the dump of an embedded stack's database
after `make demo` for four days plus the CLI and HTTP calls that fill every other table (32 tables,
none empty); `b6c66ba-postgresql-schema.sql` is pg_dump of the schema its `minqing db init` made on
PostgreSQL 15 (30 tables: the console made its two at its own start), into which the test copies the
same rows.

Each run checks, through the commands an operator uses: every process refuses the old database and
names `minqing db upgrade`; the upgrade adopts it; every row of every table is unchanged; `minqing
audit verify` passes up to the head; and the projections still answer: a rebuild from the ledger
gives exactly the rows routing and assessment kept.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, inspect, select, text

from minqing import schema
from minqing.db import make_engine

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "previous_release"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _cli(env, *args, check=True) -> Ran:
    """`minqing ARGS` in this process (a process start costs seconds on a loaded machine): the same
    main() the command runs, with the environment it would see."""
    from minqing.shell import cli
    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:       # how a refusal ends the command
                code = exc.code if isinstance(exc.code, int) else 1
                if not isinstance(exc.code, int):
                    print(exc.code, file=sys.stderr)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    result = Ran(code, out.getvalue(), err.getvalue())
    if check:
        assert result.returncode == 0, f"minqing {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result


def _load_sqlite_fixture(path: Path) -> None:
    with gzip.open(FIXTURES / "b6c66ba-sqlite.sql.gz", "rt", encoding="utf-8") as dump:
        script = dump.read()
    db = sqlite3.connect(path)
    db.executescript(script)
    db.close()


# Columns later migrations added to tables of the previous release: NULL in every upgraded row, and
# left out when rows are compared with the release's own.
ADDED_COLUMNS = {"console_accounts": ("totp_secret", "totp_last_step")}      # 0002


def _contents(url: str, only: set[str] | None = None, *, added: bool = False) -> dict[str, list[tuple]]:
    """Every row of every table (or of those `only`) but the version's, in primary-key order; the
    columns of ADDED_COLUMNS only with `added`."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for name in sorted(inspect(conn).get_table_names()):
                if name == schema.VERSION_TABLE or (only and name not in only):
                    continue
                table = Table(name, MetaData(), autoload_with=conn)
                order = list(table.primary_key.columns) or list(table.columns)
                columns = [c for c in table.columns if added or c.name not in ADDED_COLUMNS.get(name, ())]
                out[name] = [tuple(_plain(v) for v in row)
                             for row in conn.execute(select(*columns).order_by(*order))]
            return out
    finally:
        engine.dispose()


def _plain(value):
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _copy_rows(source_url: str, target_url: str) -> None:
    source, target = make_engine(source_url), make_engine(target_url)
    try:
        with source.connect() as src, target.begin() as dst:
            for name in inspect(dst).get_table_names():
                table = Table(name, MetaData(), autoload_with=dst)
                columns = [c.name for c in table.columns]
                rows = [dict(zip(columns, r)) for r in src.execute(text(f'SELECT {", ".join(columns)} FROM "{name}"'))]
                for row in rows:
                    for column in table.columns:
                        if column.type.python_type is bool and row[column.name] is not None:
                            row[column.name] = bool(row[column.name])
                if rows:
                    dst.execute(table.insert(), rows)
    finally:
        source.dispose()
        target.dispose()


def _upgrade_and_check(url: str, env: dict, expected_tables: set[str]) -> None:
    before = _contents(url)
    assert set(before) == expected_tables
    assert all(before[name] for name in expected_tables), [n for n in expected_tables if not before[n]]

    refused = _cli(env, "audit", "head", check=False)          # any process, on the old database
    assert refused.returncode != 0 and "minqing db upgrade" in refused.stderr, refused.stderr
    assert "before migrations" in refused.stderr
    state = _cli(env, "db", "current", check=False)
    assert state.returncode == 1 and json.loads(state.stdout)["state"] == "unversioned"

    upgraded = _cli(env, "db", "upgrade")
    assert "adopted" in upgraded.stdout
    assert json.loads(_cli(env, "db", "current").stdout)["revision"] == schema.head()
    assert "nothing to upgrade" in _cli(env, "db", "upgrade").stdout      # a second upgrade is a no-op

    after = _contents(url)
    assert set(after) == schema.model_tables()                # the tables the old database lacked are made
    for name in expected_tables:
        assert after[name] == before[name], name              # every row of every table, unchanged
    for name, columns in ADDED_COLUMNS.items():                # … and what later migrations added is empty
        rows = _contents(url, {name}, added=True)[name]       # (on PostgreSQL the release made no console tables)
        assert len(rows) == len(before.get(name, [])) and all(v is None for row in rows for v in row[-len(columns):])

    head = before["ledger_head"][0]
    verified = _cli(env, "audit", "verify", "--expect-head", f"{head[1]}:{head[2]}")
    assert f"{head[1]} events verified" in verified.stdout
    parked = [json.loads(line) for line in _cli(env, "consumer", "parked").stdout.splitlines()]
    assert [p["consumer"] for p in parked] == ["notify.rules"]          # the parked row still listed
    for projection, table in (("routing.assignments", "routing_cases"), ("assessment.facts", "assessment_facts")):
        rebuilt = _cli(env, "consumer", "rebuild", projection)
        assert f"up to position {head[1]}" in rebuilt.stdout
        assert _contents(url, {table})[table] == before[table], projection       # the projection answers as before


def test_the_previous_releases_sqlite_database_upgrades_with_nothing_lost(tmp_path):
    path = tmp_path / "minqing.db"
    _load_sqlite_fixture(path)
    url = f"sqlite:///{path}"
    env = {**os.environ, "MINQING_DATABASE_URL": url, "MINQING_RUN_DIR": str(tmp_path / "run")}
    _upgrade_and_check(url, env, schema.model_tables())


@pytest.mark.postgres
def test_the_previous_releases_postgresql_database_upgrades_with_nothing_lost(postgres, pg_url, tmp_path):
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:      # the schema exactly as the previous release made it
            dump = (FIXTURES / "b6c66ba-postgresql-schema.sql").read_text()
            dump = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))   # psql's \restrict
            conn.connection.dbapi_connection.execute(dump)
            conn.connection.dbapi_connection.commit()
    finally:
        engine.dispose()
    path = tmp_path / "source.db"
    _load_sqlite_fixture(path)
    _copy_rows(f"sqlite:///{path}", pg_url)
    env = {**os.environ, "MINQING_DATABASE_URL": pg_url, "MINQING_RUN_DIR": str(tmp_path / "run")}
    _upgrade_and_check(pg_url, env, schema.model_tables() - {"console_accounts", "console_sessions"})


def test_a_database_whose_tables_differ_from_the_baseline_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "minqing.db"
    _load_sqlite_fixture(path)
    db = sqlite3.connect(path)
    db.executescript("ALTER TABLE notify_outbox DROP COLUMN retries; ALTER TABLE routing_cases ADD COLUMN extra TEXT;")
    db.close()
    url = f"sqlite:///{path}"
    before = _contents(url)
    env = {**os.environ, "MINQING_DATABASE_URL": url, "MINQING_RUN_DIR": str(tmp_path / "run")}
    refused = _cli(env, "db", "upgrade", check=False)
    assert refused.returncode == 1
    assert "notify_outbox lacks column(s) retries" in refused.stderr
    assert "routing_cases has column(s) the baseline does not: extra" in refused.stderr
    assert _contents(url) == before                             # nothing changed, no version written


def test_parked_rows_from_before_held_streams_are_upgraded_not_refused(tmp_path):
    """consumer_parked without `stream` and `held_behind`, which releases before held streams left and
    later ones altered at every start: the baseline adds them (batch mode on SQLite) and fills in
    each row's stream from the ledger."""
    path = tmp_path / "minqing.db"
    _load_sqlite_fixture(path)
    db = sqlite3.connect(path)
    db.executescript("ALTER TABLE consumer_parked DROP COLUMN stream; ALTER TABLE consumer_parked DROP COLUMN held_behind;")
    db.close()
    url = f"sqlite:///{path}"
    env = {**os.environ, "MINQING_DATABASE_URL": url, "MINQING_RUN_DIR": str(tmp_path / "run")}
    _cli(env, "db", "upgrade")
    parked = [json.loads(line) for line in _cli(env, "consumer", "parked").stdout.splitlines()]
    assert [(p["consumer"], p["state"], p["stream"].startswith("case-")) for p in parked] == [("notify.rules", "parked", True)]


@pytest.mark.postgres
def test_on_postgresql_the_migrations_head_is_the_models_and_a_stale_append_function_is_caught(pg_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from tests.unit.test_schema_migrations import models_metadata
    engine = make_engine(pg_url)
    try:
        schema.upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), models_metadata())
        assert [d for d in diff if not (d[0] == "remove_table" and d[1].name == schema.VERSION_TABLE)] == []
        assert schema.state(engine).kind == "current"
        with engine.begin() as conn:          # an append function from another release
            conn.exec_driver_sql("CREATE OR REPLACE FUNCTION minqing_append() RETURNS int LANGUAGE sql AS 'SELECT 1'")
            conn.exec_driver_sql("DROP FUNCTION minqing_append(text[], int[], int[], int[], int[], int[], int[], "
                                 "text[], text[], text[], int[], text[], text[], text[], text[], text)")
        with pytest.raises(schema.SchemaError, match="append function differs.*minqing db upgrade"):
            schema.require_current(engine)
        schema.upgrade(engine)
        assert schema.state(engine).kind == "current"
    finally:
        engine.dispose()
