"""The database's schema version: Alembic migrations (minqing/migrations/), one database for all.

Every table of Minqing — the ledger's, the kernel's (checkpoints, access, parking, vault) and every
service's — lives in one database and one migration history. The rules:

* `minqing db upgrade` brings a database to the code's head: it creates an empty one, adopts one made
  by a release from before migrations (`create_all`, no `alembic_version` table: see
  migrations/versions/0001_baseline.py), and applies every later migration. `minqing db current`
  says where a database is.
* Every process that uses the database — each service, the relay, the gateway, the console and the
  CLI's commands — checks the version when it starts (`require_current`) and refuses, naming the
  command to run, on a database older than its code (or newer: a rolled-back release must not write
  into tables it does not know).
* `minqing run`, the embedded all-in-one default, upgrades its own database itself and says so.
* Code-owned database objects that are not tables (the ledger's append function on PostgreSQL) are
  replaced by every upgrade from the code, and checked like the version.

Tests and benches still build throwaway databases from the models (minqing.service_kit.create_tables,
stamped at head, as Alembic's cookbook does for a fresh database); tests/unit/test_schema_migrations.py
checks that the migrations and the models describe the same tables.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, MetaData, inspect, text

from minqing.db import is_postgres, write_transaction

# Alembic's INFO lines (each plugin, "Context impl", every revision run) on every check and upgrade:
# minqing.schema says what happened in one line of its own instead.
for _name in ("alembic.runtime.plugins", "alembic.runtime.migration"):
    logging.getLogger(_name).setLevel(logging.WARNING)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"
UPGRADE_COMMAND = "minqing db upgrade"
_PG_LOCK = 1835626866          # advisory lock: one upgrade at a time (ledger_pg uses …865)
_DROP_APPEND = """DO $$ DECLARE f regprocedure; BEGIN
  FOR f IN SELECT oid::regprocedure FROM pg_proc WHERE proname = 'minqing_append' LOOP
    EXECUTE 'DROP FUNCTION ' || f;
  END LOOP;
END $$"""


def models() -> list[MetaData]:
    """Every MetaData of the code: what the head of the migrations must equal."""
    from importlib.metadata import entry_points

    from minqing import access, checkpoints, ledger, parking, vault
    # each service declares its tables in pyproject.toml (entry points "minqing.tables"), so the kernel
    # names no service (the layering, tests/unit/test_layering.py)
    services = [ep.load() for ep in sorted(entry_points(group="minqing.tables"), key=lambda ep: ep.name)]
    if not services:
        raise RuntimeError("no service tables registered (entry points minqing.tables): reinstall Minqing "
                           "(make deps, or pip install -e .)")
    return [ledger.metadata_obj, checkpoints.metadata_obj, access.metadata_obj, parking.metadata_obj,
            vault.metadata_obj, *services]


def model_tables() -> set[str]:
    return {name for md in models() for name in md.tables}


@functools.cache
def _script():
    from alembic.script import ScriptDirectory
    return ScriptDirectory(str(MIGRATIONS))


def head() -> str:
    return _script().get_current_head()


def _config(connection: Connection):
    from alembic.config import Config
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def current(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext
    return MigrationContext.configure(conn).get_current_revision()


@dataclass(frozen=True)
class State:
    """Where a database stands against the code: `kind` is one of
    current | empty | unversioned (Minqing tables, no version: made before migrations) | behind | ahead
    | stale-function (PostgreSQL: the ledger's append function differs from the code's)."""
    kind: str
    revision: str | None
    head: str

    def describe(self) -> str:
        return {
            "current": f"at {self.head} (the code's head)",
            "empty": "empty: no Minqing tables",
            "unversioned": "made before migrations (tables without a version)",
            "behind": f"at {self.revision}, older than the code's head {self.head}",
            "ahead": f"at {self.revision}, which this code does not know (newer than its head {self.head})",
            "stale-function": f"at {self.head}, but the ledger's append function differs from this code's",
        }[self.kind]


def state(engine: Engine) -> State:
    from minqing import ledger_pg
    top = head()
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        revision = current(conn) if VERSION_TABLE in names else None
        if revision is None:
            return State("unversioned" if names & model_tables() else "empty", None, top)
        if revision == top:
            if is_postgres(engine) and not ledger_pg.function_matches(conn):
                return State("stale-function", revision, top)
            return State("current", revision, top)
        known = {script.revision for script in _script().walk_revisions()}
        return State("behind" if revision in known else "ahead", revision, top)


# The exit status of a process that refuses its database's schema (sysexits' EX_CONFIG): the systemd
# units name it in RestartPreventExitStatus=, so a refusing process stays stopped, with its message in
# the journal, instead of restarting every two seconds until someone runs `minqing db upgrade`.
REFUSED_EXIT = 78


class SchemaError(SystemExit):
    """The database's schema is not the one this code was written for: the message names the fix."""


class AdoptionError(SchemaError):
    """A database from before migrations whose tables are not the baseline's: nothing was changed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("this database was not made by a Minqing release this one can adopt (nothing was "
                         "changed):\n" + "\n".join(f"  - {p}" for p in problems) +
                         "\nrestore a backup made by a release before migrations, or ask the project "
                         "(docs/operations.md, \"Upgrade\")")


def require_current(engine: Engine, who: str = "minqing") -> None:
    """Refuse (SchemaError, which ends a process with its message) unless the database is at head."""
    found = state(engine)
    if found.kind == "current":
        return
    where = engine.url.render_as_string(hide_password=True)
    if found.kind == "ahead":
        fix = "run the release that wrote it (or restore a backup from before its upgrade)"
    else:
        fix = f"run `{UPGRADE_COMMAND}` with the same MINQING_DATABASE_URL, then start again"
    raise SchemaError(f"{who}: the database {where} is {found.describe()}; {who} needs {found.head}: {fix} "
                      f"(docs/operations.md, \"Upgrade\")")


def upgrade(engine: Engine) -> tuple[State, str]:
    """Bring the database to the code's head; returns (the state before, the head). One upgrade runs at
    a time (SQLite: the write lock; PostgreSQL: an advisory lock). Raises AdoptionError (from the
    baseline) when a database from before migrations does not hold the baseline's tables."""
    from alembic import command
    from minqing import ledger_pg
    before = state(engine)
    if before.kind == "ahead":
        raise SchemaError(f"the database is {before.describe()}; this release cannot upgrade it")
    with write_transaction(engine) as conn:
        if is_postgres(engine):
            conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK})"))
        command.upgrade(_config(conn), "head")
        if is_postgres(engine):                    # code, not data: replaced by every upgrade, and
            conn.exec_driver_sql(_DROP_APPEND)     # no other release's overload left beside it
            ledger_pg.create_function(conn)
    return before, head()


def stamp_fresh(engine: Engine) -> None:
    """Tests and benches (service_kit.create_tables): mark a database just built from the models as at
    head, unless it already carries a version."""
    from alembic import command
    with write_transaction(engine) as conn:
        if current(conn) is None:
            command.stamp(_config(conn), "head")


def upgrade_message(before: State, top: str) -> str:
    if before.kind == "current":
        return f"database schema at {top}: nothing to upgrade"
    if before.kind == "stale-function":
        return f"database schema at {top}: the ledger's append function replaced by this release's"
    if before.kind == "empty":
        return f"database schema created at {top}"
    if before.kind == "unversioned":
        return f"database from before migrations adopted: its tables match the baseline; upgraded to {top}"
    return f"database schema upgraded from {before.revision} to {top}"
