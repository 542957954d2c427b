"""Database engines and write transactions for both backends.

SQLite (the embedded default) runs in WAL mode and opens write transactions with BEGIN IMMEDIATE,
so a transaction that reads and then writes can never fail half-way on a lock upgrade. PostgreSQL
uses READ COMMITTED; the ledger serialises its appends itself (see minqing.ledger).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event

_WRITE = "minqing_write"


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None      # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that may write: committed on success, rolled back on any error."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        with conn.begin():
            yield conn


def increment(conn: Connection, table, keys: dict, column: str, **on_insert) -> int:
    """Atomically add 1 to `column` of the row with `keys` (creating it at 1); return the new value.
    One statement (INSERT … ON CONFLICT DO UPDATE … RETURNING), so concurrent callers never collide."""
    if conn.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).values(**keys, **{column: 1}, **on_insert)
    statement = statement.on_conflict_do_update(index_elements=list(keys),
                                                set_={column: getattr(table.c, column) + 1})
    return conn.execute(statement.returning(getattr(table.c, column))).scalar_one()


def bulk_insert(conn: Connection, table, rows: list[dict]) -> None:
    """Insert many rows in the connection's transaction: COPY on PostgreSQL (several times faster
    than a pipelined executemany for the tens of thousands of rows a rebuild writes)."""
    if not rows:
        return
    if conn.engine.dialect.name != "postgresql":
        conn.execute(table.insert(), rows)
        return
    columns = list(rows[0])
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        with cursor.copy(f'COPY {table.name} ({", ".join(columns)}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
    finally:
        cursor.close()


def upsert_many(conn: Connection, table, key: str, rows: list[dict]) -> None:
    """Insert or overwrite many rows keyed by the single column `key`, in one statement."""
    if conn.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    columns = [c for c in rows[0] if c != key]
    conn.execute(statement.on_conflict_do_update(index_elements=[key],
                                                 set_={c: getattr(statement.excluded, c) for c in columns}), rows)


def upsert(conn: Connection, table, keys: dict, values: dict) -> None:
    """Insert the row with `keys`, or overwrite its `values` when it exists — one statement, so a
    projection and a timer sweep writing the same row never collide on its key."""
    if conn.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).values(**keys, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=values) if values
                 else statement.on_conflict_do_nothing(index_elements=list(keys)))
