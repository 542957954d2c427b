"""Events a consumer has set aside: *parked* (applying it kept failing) or *held* (a later event of a
stream that has a parked event, kept back so the stream is never applied out of order).

Both live in `consumer_parked`, one row per (consumer, position); a held row names the parked
position it waits behind in `held_behind`. The rows are the durable record: a follower reads them to
know which streams are blocked, /health and `minqing consumer parked` show them, and `minqing
consumer retry` applies them and deletes each row in the same transaction as the effect. The
follower's checkpoint is already past every row, so rows, not the checkpoint, say what is owed.
"""
from __future__ import annotations

import re

from prometheus_client import Gauge
from sqlalchemy import (BigInteger, Column, Connection, Engine, MetaData, String, Table, Text, func, inspect, select,
                        text, update)

from minqing.ledger import RecordedEvent, events_table

metadata_obj = MetaData()
parked_table = Table(
    "consumer_parked", metadata_obj,
    Column("consumer", String(100), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("type", String(100), nullable=False),
    Column("error", Text, nullable=False),
    Column("parked_at", String(32), nullable=False),
    Column("stream", String(200)),              # NULL only in rows from before streams were held
    Column("held_behind", BigInteger),          # NULL: parked; else the parked position it waits behind
)

SET_ASIDE = Gauge("minqing_consumer_parked", "Events a consumer has now parked or held (rows in consumer_parked)",
                  ["consumer"])

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def create_schema(engine: Engine) -> None:
    """Create the table, or add the columns that came with held streams to one from before."""
    metadata_obj.create_all(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("consumer_parked")}
    with engine.begin() as conn:
        if "stream" not in columns:
            conn.execute(text("ALTER TABLE consumer_parked ADD COLUMN stream VARCHAR(200)"))
            conn.execute(update(parked_table).values(stream=select(events_table.c.stream).where(
                events_table.c.position == parked_table.c.position).scalar_subquery()))
        if "held_behind" not in columns:
            conn.execute(text("ALTER TABLE consumer_parked ADD COLUMN held_behind BIGINT"))


def clean_error(message: str) -> str:
    """An error text fit to store and log: no control characters (a NUL from the event would make
    the row itself unstorable on PostgreSQL), no lone surrogates, bounded."""
    message = message.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("?", message)[:2000]


def blocked_streams(conn: Connection, consumer: str, streams: set[str] | None = None) -> dict[str, int]:
    """{stream: its first parked or held position} for the streams `consumer` must hold."""
    query = (select(parked_table.c.stream, func.min(parked_table.c.position))
             .where(parked_table.c.consumer == consumer).group_by(parked_table.c.stream))
    if streams is not None:
        if not streams:
            return {}
        query = query.where(parked_table.c.stream.in_(sorted(streams)))
    return {stream: first for stream, first in conn.execute(query)}


def set_aside(conn: Connection, consumer: str, event: RecordedEvent, *, error: str, at: str,
              held_behind: int | None = None) -> None:
    conn.execute(parked_table.insert().values(
        consumer=consumer, position=event.position, event_id=event.event_id, type=event.type, stream=event.stream,
        error=clean_error(error), parked_at=at, held_behind=held_behind))


def list_parked(ledger_or_engine, consumer: str | None = None) -> list[dict]:
    """Every parked and held row (of `consumer`), in (consumer, position) order."""
    engine = getattr(ledger_or_engine, "engine", ledger_or_engine)
    query = select(parked_table).order_by(parked_table.c.consumer, parked_table.c.position)
    if consumer:
        query = query.where(parked_table.c.consumer == consumer)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def summary(engine: Engine, consumer: str, show: int = 10) -> dict:
    """Counts and the first positions of what `consumer` has set aside; refreshes the gauge."""
    with engine.connect() as conn:
        counts = dict(conn.execute(
            select(parked_table.c.held_behind.is_(None), func.count())
            .where(parked_table.c.consumer == consumer).group_by(parked_table.c.held_behind.is_(None))).all())
        first = conn.execute(select(parked_table.c.position, parked_table.c.held_behind)
                             .where(parked_table.c.consumer == consumer)
                             .order_by(parked_table.c.position).limit(show)).all()
    parked, held = counts.get(True, 0), counts.get(False, 0)
    SET_ASIDE.labels(consumer).set(parked + held)
    return {"parked": parked, "held": held,
            "parked_positions": [p for p, behind in first if behind is None],
            "held_positions": [p for p, behind in first if behind is not None]}
