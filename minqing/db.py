"""Database engines and write transactions for both backends.

SQLite (the embedded default) runs in WAL mode and opens write transactions with BEGIN IMMEDIATE,
so a transaction that reads and then writes can never fail half-way on a lock upgrade. PostgreSQL
uses READ COMMITTED; the ledger serialises its appends itself (see minqing.ledger).

Waiting for SQLite's write lock (issue #12.2). SQLite's own busy wait sleeps inside a C call: in a
nameko service every green thread of the process stops meanwhile — including the one that holds the
lock, if it yielded inside its transaction, which then cannot commit: the waiter waited the whole
busy timeout (it was 30 s) and the request answered 503. So:

- SQLite waits at most SQLITE_BUSY_MS inside one call (the longest the hub can be stopped by a lock);
- BEGIN IMMEDIATE — the one statement where a writer waits for another — is retried with
  `time.sleep` between tries, which in a monkey-patched service yields to the hub (the lock's holder
  in this process runs and commits), for up to SQLITE_LOCK_WAIT_SECONDS in all;
- and nothing that yields runs inside a write transaction (services/intake hashes PINs before BEGIN).
Running sqlite3 calls in eventlet's thread pool instead was rejected: every statement would pay a
thread hand-off, and the pool (20 threads) would be shared with PIN hashing.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, OperationalError

_WRITE = "minqing_write"
SQLITE_BUSY_MS = 20                 # the longest one wait inside SQLite (it blocks the OS thread)
SQLITE_LOCK_WAIT_SECONDS = 30.0     # how long a write transaction waits for the lock in all
PING_AFTER_IDLE_SECONDS = 1.0       # PostgreSQL: a pooled connection idle this long is pinged before use


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, connect_args={"timeout": SQLITE_BUSY_MS / 1000, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None      # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            if conn.get_execution_options().get(_WRITE):
                _begin_immediate(conn)
            else:
                conn.exec_driver_sql("BEGIN DEFERRED")

        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)

    # Ping a pooled connection only when it has been idle (issue #16). SQLAlchemy's pool_pre_ping
    # pings at every checkout: one more round trip and one more transaction each time — half of the
    # ~100 transactions a report cost the stack (bench/statements.py). A connection checked in less
    # than PING_AFTER_IDLE_SECONDS ago was working then; one idle longer may have been cut (a
    # PostgreSQL restart, a failover, a firewall) and is pinged, and a dead one is replaced before
    # use. A connection cut within that second fails its statement instead: every caller already
    # handles that (followers retry in place, minqing.consumer.retry_in_place; requests answer 503).
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, _proxy):
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:        # the pool replaces the connection and checks out again
            raise DisconnectionError(str(exc)) from exc

    return engine


def _begin_immediate(conn) -> None:
    """Take SQLite's write lock, waiting for it in short blocking tries with yielding pauses between."""
    deadline = time.monotonic() + SQLITE_LOCK_WAIT_SECONDS
    pause = 0.001
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)       # monkey-patched in a service: other green threads run meanwhile
        pause = min(pause * 2, 0.05)


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
