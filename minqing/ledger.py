"""The ledger: an append-only, globally ordered, hash-chained log of every event (DESIGN §2).

Streams (`case-<id>`, `county-<id>`, `cadre-<id>`) carry versions 1, 2, 3 …; the whole ledger carries
positions 1, 2, 3 … without gaps. Appends are serialised by a row lock on the one-row `ledger_head`
table (SQLite: BEGIN IMMEDIATE), so a position is assigned only while every lower position is
committed — a reader that has seen position N never later finds an event below N (principle 3).
The head row also holds the hash of the last event, so each append chains its events to their
predecessor without scanning, and truncating the tail is detectable.

On PostgreSQL the whole append is one call of the stored function `minqing_append` (see
minqing.ledger_pg for what it keeps and why each lock is taken); on its own it runs as one autocommit
statement — a single round trip — and appends that wait for the lock at the same moment in one
process go together in one call, one commit (group commit, minqing.ledger_group). SQLite takes the
portable path below, statement by statement.

Idempotent append: an event id already recorded with the same content is not appended again; the
recorded copy is returned. Optimistic concurrency: each write names the stream version it expects.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import (BigInteger, Column, Connection, Engine, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, any_, bindparam, func, select, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError

from minqing import contract, ledger_group, ledger_pg
from minqing.chain import canonical_json, chain_hash  # noqa: F401  (imported from here by callers)
from minqing.clock import SYSTEM_CLOCK, Clock, isoformat
from minqing.db import is_postgres, read_transaction, write_transaction

GENESIS_HASH = "0" * 64


class _Any:
    def __repr__(self):
        return "ANY"


ANY = _Any()          # expected_version that skips the concurrency check
NO_STREAM = 0         # expected_version for a stream that must not exist yet

metadata_obj = MetaData()

events_table = Table(
    "ledger_events", metadata_obj,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("stream", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", String(100), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("data", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("recorded_at", String(32), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("stream", "version", name="ledger_events_stream_version"),
)

head_table = Table(
    "ledger_head", metadata_obj,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)


class LedgerError(Exception):
    pass


class ConcurrencyError(LedgerError):
    """The stream moved since the caller read it: reload, re-decide, retry."""

    def __init__(self, stream: str, expected: int, actual: int):
        self.stream, self.expected, self.actual = stream, expected, actual
        super().__init__(f"stream {stream!r} is at version {actual}, expected {expected}")


class DuplicateEventIdError(LedgerError):
    """An event id is already recorded with different content (a caller bug, never a retry)."""


@dataclass(frozen=True)
class Metadata:
    actor: str                          # who caused it: "operator:<id>", "cadre:<id>", "service:routing"
    county: str
    correlation_id: str | None = None   # the request or case flow this belongs to
    causation_id: str | None = None     # the event id that caused this one

    def to_dict(self) -> dict[str, Any]:
        return {"actor": self.actor, "county": self.county,
                "correlation_id": self.correlation_id, "causation_id": self.causation_id}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Metadata":
        return cls(actor=raw["actor"], county=raw["county"],
                   correlation_id=raw.get("correlation_id"), causation_id=raw.get("causation_id"))

    def caused_by(self, event: "RecordedEvent", actor: str) -> "Metadata":
        """Metadata for an event decided in reaction to `event`."""
        return Metadata(actor=actor, county=event.metadata.county,
                        correlation_id=event.metadata.correlation_id or event.event_id,
                        causation_id=event.event_id)


def new_event_id() -> str:
    """A random (version 4) UUID in its usual text form, exactly as str(uuid.uuid4()) gives it, at a
    fifth of the cost (no UUID object): every event recorded needs one."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40          # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80          # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: Mapping[str, Any]
    metadata: Metadata
    event_id: str = field(default_factory=lambda: new_event_id())


@dataclass(frozen=True)
class StreamWrite:
    stream: str
    events: Sequence[NewEvent]
    expected_version: Any = ANY


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    event_id: str
    stream: str
    version: int
    type: str
    schema_version: int
    data: dict
    metadata: Metadata
    recorded_at: str
    hash: str

    @property
    def county(self) -> str:
        return self.metadata.county


def create_schema(engine: Engine) -> None:
    metadata_obj.create_all(engine)
    with write_transaction(engine) as conn:
        if conn.execute(select(head_table.c.id)).first() is None:
            try:
                with conn.begin_nested():
                    conn.execute(head_table.insert().values(id=1, position=0, hash=GENESIS_HASH))
            except IntegrityError:
                pass   # another process created it first
        if is_postgres(engine):
            ledger_pg.create_function(conn)


class Ledger:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM_CLOCK):
        self.engine = engine
        self.clock = clock
        self._postgres = is_postgres(engine)

    # ---- writing -------------------------------------------------------------------------------

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: Any = ANY, *,
               conn: Connection | None = None) -> list[RecordedEvent]:
        return self.append_many([StreamWrite(stream, events, expected_version)], conn=conn)

    def append_many(self, writes: Sequence[StreamWrite], *, conn: Connection | None = None) -> list[RecordedEvent]:
        """Append to one or more streams atomically; every event is validated against the contract.

        With `conn`, the append joins the caller's write transaction (so a service can commit its own
        rows and its events together); otherwise it runs in its own.
        """
        for write in writes:
            for event in write.events:
                contract.validate_event(event.type, event.data)
        return self._append(conn, writes)

    def _append(self, conn: Connection | None, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        """Append in `conn`'s transaction, or (conn None, PostgreSQL) as one autocommit statement."""
        if self._postgres:
            return self._append_postgres(conn, writes)
        if conn is None:
            with write_transaction(self.engine) as own:
                return self._append_portable(own, writes)
        return self._append_portable(conn, writes)

    def _append_postgres(self, conn: Connection | None, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        """One call of the stored function minqing_append (minqing.ledger_pg), without SQLAlchemy: in
        `conn`'s transaction, or else grouped with the process's other waiting appends
        (minqing.ledger_group) in a transaction of its own."""
        pairs = [(w, e) for w in writes for e in w.events]
        if not pairs:
            return []
        recorded_at = isoformat(self.clock.now())
        group = ledger_group.encode(writes, pairs, recorded_at,
                                    [None if w.expected_version is ANY else w.expected_version for w in writes])
        if conn is not None:
            outcome = ledger_group.call_in(conn.connection.dbapi_connection, [group])[0]
        else:
            outcome = ledger_group.combiner(self.engine).submit(group)
        if outcome.status == "recorded":
            if conn is not None:
                return self._already_recorded(conn, writes, [e for _, e in pairs])
            with read_transaction(self.engine) as own:
                return self._already_recorded(own, writes, [e for _, e in pairs])
        if outcome.status == "conflict":
            raise ConcurrencyError(outcome.stream, outcome.expected, outcome.actual)
        return [RecordedEvent(position=p, event_id=e.event_id, stream=w.stream, version=v, type=e.type,
                              schema_version=sv, data=dict(e.data), metadata=e.metadata, recorded_at=recorded_at,
                              hash=h)
                for (w, e), p, v, h, sv in zip(pairs, outcome.positions, outcome.versions, outcome.hashes,
                                               group.schemas)]

    def _append_portable(self, conn: Connection, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        """The append through SQLAlchemy, statement by statement: SQLite's path (and PostgreSQL's before
        minqing.ledger_pg; kept callable there so tests can mix both paths in one ledger)."""
        pairs = [(w, e) for w in writes for e in w.events]
        if not pairs:
            return []
        # Everything that needs no lock is prepared first.
        texts = [(canonical_json(dict(e.data)), canonical_json(e.metadata.to_dict()), contract.event_type(e.type).version)
                 for _, e in pairs]
        streams = list(dict.fromkeys(w.stream for w in writes))
        ids = [e.event_id for _, e in pairs]
        # First the lock, alone: in READ COMMITTED a statement that waited for a row lock re-reads only
        # that row, so anything else must be read by a later statement, with a fresh snapshot.
        lock = select(head_table.c.position, head_table.c.hash).where(head_table.c.id == 1)
        if self._postgres:
            lock = lock.with_for_update()
        locked = conn.execute(lock).one()
        columns = [select(func.count()).select_from(events_table).where(events_table.c.event_id.in_(ids))
                   .scalar_subquery().label("recorded")]
        columns += [select(func.coalesce(func.max(events_table.c.version), 0)).where(events_table.c.stream == stream)
                    .scalar_subquery().label(f"v{i}") for i, stream in enumerate(streams)]
        head = conn.execute(select(*columns)).mappings().one()
        if head["recorded"]:
            return self._already_recorded(conn, writes, [e for _, e in pairs])
        versions = {stream: head[f"v{i}"] for i, stream in enumerate(streams)}
        for write in writes:
            if write.expected_version is not ANY and write.expected_version != versions[write.stream]:
                raise ConcurrencyError(write.stream, write.expected_version, versions[write.stream])

        position, prev_hash = locked.position, locked.hash
        recorded_at = isoformat(self.clock.now())
        rows: list[dict] = []
        for (write, event), (data_text, meta_text, schema_version) in zip(pairs, texts):
            position += 1
            versions[write.stream] += 1
            version = versions[write.stream]
            prev_hash = chain_hash(prev_hash, position, event.event_id, write.stream, version,
                                   event.type, schema_version, data_text, meta_text, recorded_at)
            rows.append(dict(position=position, event_id=event.event_id, stream=write.stream,
                             version=version, type=event.type, schema_version=schema_version,
                             data=data_text, metadata=meta_text, recorded_at=recorded_at, hash=prev_hash))
        conn.execute(events_table.insert(), rows)
        conn.execute(update(head_table).where(head_table.c.id == 1).values(position=position, hash=prev_hash))
        return [RecordedEvent(position=r["position"], event_id=r["event_id"], stream=r["stream"], version=r["version"],
                              type=r["type"], schema_version=r["schema_version"], data=dict(e.data),
                              metadata=e.metadata, recorded_at=recorded_at, hash=r["hash"])
                for r, (_, e) in zip(rows, pairs)]

    def _already_recorded(self, conn: Connection, writes: Sequence[StreamWrite],
                          events: list[NewEvent]) -> list[RecordedEvent]:
        ids = [e.event_id for e in events]
        found = {r["event_id"]: r for r in conn.execute(
            select(events_table).where(events_table.c.event_id.in_(ids))).mappings()}
        if len(found) != len(ids):
            raise DuplicateEventIdError(f"some of the events {ids} are recorded already, some not")
        out = []
        for write in writes:
            for event in write.events:
                row = found[event.event_id]
                if (row["stream"], row["type"], row["data"]) != (write.stream, event.type, canonical_json(dict(event.data))):
                    raise DuplicateEventIdError(f"event {event.event_id} is recorded with other content")
                out.append(_to_event(row))
        return out

    @staticmethod
    def _stream_version(conn: Connection, stream: str) -> int:
        return conn.execute(select(func.coalesce(func.max(events_table.c.version), 0))
                            .where(events_table.c.stream == stream)).scalar_one()

    # ---- reading -------------------------------------------------------------------------------

    def stream_version(self, stream: str, *, conn: Connection | None = None) -> int:
        if conn is not None:
            return self._stream_version(conn, stream)
        with read_transaction(self.engine) as own:
            return self._stream_version(own, stream)

    def read_stream(self, stream: str, after_version: int = 0, *, conn: Connection | None = None) -> list[RecordedEvent]:
        query = (select(events_table).where(events_table.c.stream == stream, events_table.c.version > after_version)
                 .order_by(events_table.c.version))
        return self._read(query, conn)

    def read_streams(self, streams: Iterable[str], *, conn: Connection | None = None) -> dict[str, list[RecordedEvent]]:
        """Several whole streams in one query: {stream: events in version order}."""
        wanted = list(dict.fromkeys(streams))
        out: dict[str, list[RecordedEvent]] = {s: [] for s in wanted}
        if wanted:
            # PostgreSQL: one array parameter (= ANY), not one bind parameter per stream for
            # SQLAlchemy to expand and compile — a sweep asks for up to 10,000 streams at once.
            match = (events_table.c.stream == any_(bindparam("streams", wanted, type_=ARRAY(String)))
                     if self._postgres else events_table.c.stream.in_(wanted))
            query = select(events_table).where(match).order_by(events_table.c.stream, events_table.c.version)
            for event in self._read(query, conn):
                out[event.stream].append(event)
        return out

    def read_all(self, after: int = 0, limit: int = 1000, *, types: Iterable[str] | None = None,
                 upto: int | None = None, conn: Connection | None = None) -> list[RecordedEvent]:
        """Events with position > `after` (and <= `upto`), in order, at most `limit` of them."""
        query = select(events_table).where(events_table.c.position > after)
        if upto is not None:
            query = query.where(events_table.c.position <= upto)
        if types is not None:
            query = query.where(events_table.c.type.in_(list(types)))
        return self._read(query.order_by(events_table.c.position).limit(limit), conn)

    def iter_all(self, after: int = 0, batch: int = 1000) -> Iterator[RecordedEvent]:
        while True:
            events = self.read_all(after, batch)
            if not events:
                return
            yield from events
            after = events[-1].position

    def head(self, *, conn: Connection | None = None) -> tuple[int, str]:
        """(position, hash) of the last recorded event; (0, GENESIS_HASH) when empty."""
        query = select(head_table.c.position, head_table.c.hash).where(head_table.c.id == 1)
        if conn is not None:
            row = conn.execute(query).one()
        else:
            with read_transaction(self.engine) as own:
                row = own.execute(query).one()
        return row.position, row.hash

    def _read(self, query, conn: Connection | None) -> list[RecordedEvent]:
        """`query` selects whole rows of ledger_events (select(events_table)), in the table's column
        order: they are read as plain tuples (a mapping per row cost ~15 % of a replay)."""
        if conn is not None:
            return [_row_event(r) for r in conn.execute(query)]
        with read_transaction(self.engine) as own:
            return [_row_event(r) for r in own.execute(query)]


def _row_event(row: Sequence[Any]) -> RecordedEvent:
    """A RecordedEvent from a ledger_events row as a tuple, in the table's column order."""
    position, event_id, stream, version, type_, schema_version, data, metadata, recorded_at, hash_ = row
    schema_version, data = contract.upcast(type_, schema_version, json.loads(data))
    meta = json.loads(metadata)
    return RecordedEvent(position, event_id, stream, version, type_, schema_version, data,
                         Metadata(meta["actor"], meta["county"], meta.get("correlation_id"), meta.get("causation_id")),
                         recorded_at, hash_)


def _to_event(row: Mapping[str, Any]) -> RecordedEvent:
    schema_version, data = contract.upcast(row["type"], row["schema_version"], json.loads(row["data"]))
    return RecordedEvent(
        position=row["position"], event_id=row["event_id"], stream=row["stream"], version=row["version"],
        type=row["type"], schema_version=schema_version, data=data,
        metadata=Metadata.from_dict(json.loads(row["metadata"])), recorded_at=row["recorded_at"],
        hash=row["hash"])
