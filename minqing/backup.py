"""Logical backups and restores of Minqing's database: `minqing db backup` / `minqing db restore`.

SQLite (the embedded default): SQLite's online backup API copies a consistent snapshot page by page
while services keep writing, so no stop is needed; the backup is itself a SQLite file.

PostgreSQL: `pg_dump --format=custom` (one consistent snapshot, restorable table by table) and
`pg_restore`. The password never appears on a command line (where `ps` would show it): the
connection is handed to the client programs as PG* environment variables. A county's continuous
protection on PostgreSQL is a base backup plus WAL archiving (docs/operations.md); a dump is the
portable, point-in-time copy this module makes.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(RuntimeError):
    """A backup or restore could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class Plan:
    """The client command to run, and the environment that carries the connection (password too)."""
    argv: list[str]
    env: dict[str, str]

    def shown(self) -> str:
        """The command as an operator may read it: connection variables named, the password not."""
        shown_env = " ".join(f"{k}={'***' if k == 'PGPASSWORD' else v}" for k, v in sorted(self.env.items()))
        return f"{shown_env} {' '.join(self.argv)}".strip()


def backend(database_url: str) -> str:
    name = make_url(database_url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"backups of {name} databases are not supported (SQLite and PostgreSQL are)")
    return name


def _sqlite_path(database_url: str) -> Path:
    path = make_url(database_url).database
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(path)


def _pg_env(database_url: str) -> dict[str, str]:
    url = make_url(database_url)
    env = {"PGDATABASE": url.database or "", "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432)}
    if url.username:
        env["PGUSER"] = url.username
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return env


def pg_tool(name: str) -> str:
    """`pg_dump`/`pg_restore`: Debian's PostgreSQL 15 client first (it must not be older than the
    server), then $PATH."""
    for candidate in (os.environ.get("MINQING_PG_BIN"), "/usr/lib/postgresql/15/bin"):
        if candidate and (Path(candidate) / name).is_file():
            return str(Path(candidate) / name)
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} not found: install postgresql-client-15 (apt-get install postgresql-client-15)")
    return found


def dump_plan(database_url: str, out: Path) -> Plan:
    return Plan([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={out}"],
                _pg_env(database_url))


def restore_plan(database_url: str, source: Path) -> Plan:
    # --clean --if-exists: a restore over a half-restored or damaged database replaces what is there;
    # --single-transaction: it lands whole or not at all.
    return Plan([pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
                 "--single-transaction", "--exit-on-error", f"--dbname={_pg_env(database_url)['PGDATABASE']}",
                 str(source)], _pg_env(database_url))


def _run(plan: Plan) -> None:
    result = subprocess.run(plan.argv, env={**os.environ, **plan.env}, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{Path(plan.argv[0]).name} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup from `source` into `target` (replacing its content), pages in steps so a
    busy writer is not blocked for the whole copy."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst, pages=1024)
        finally:
            dst.close()
    finally:
        src.close()


def backup(database_url: str, out: Path) -> str:
    """Write a backup of the database to `out` (refusing to overwrite); returns what was done."""
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} exists; choose a new file (backups are never overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if backend(database_url) == "sqlite":
        source = _sqlite_path(database_url)
        if not source.is_file():
            raise BackupError(f"no SQLite database at {source}")
        partial = out.with_name(out.name + ".partial")
        partial.unlink(missing_ok=True)
        _sqlite_copy(source, partial)
        os.chmod(partial, 0o600)            # it holds the vault's ciphertexts and the access record
        partial.rename(out)
        return f"SQLite online backup of {source} written to {out}"
    plan = dump_plan(database_url, out)
    old_umask = os.umask(0o077)
    try:
        _run(plan)
    finally:
        os.umask(old_umask)
    return f"pg_dump (custom format) written to {out}"


def restore(database_url: str, source: Path) -> str:
    """Replace the database's content with the backup in `source`. Stop every Minqing process first."""
    source = Path(source)
    if not source.is_file():
        raise BackupError(f"no backup at {source}")
    if backend(database_url) == "sqlite":
        with open(source, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise BackupError(f"{source} is not a SQLite backup (was it made from PostgreSQL?)")
        target = _sqlite_path(database_url)
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm", "-journal"):      # a destroyed database's leftovers must not replay
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        _sqlite_copy(source, target)
        return f"{target} restored from {source}"
    _run(restore_plan(database_url, source))
    return f"database {_pg_env(database_url)['PGDATABASE']} restored from {source}"
