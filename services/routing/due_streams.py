"""The due cases' streams as the timer sweep reads them: what folding and deciding need, and no more.

Ledger.read_streams gives whole RecordedEvents: every column, the metadata decoded, two frozen
dataclasses per event. Deciding a timer reads only each event's type, version and data (and when it
was recorded, which the fold keeps), plus the last event's id (the cause of what the sweep appends).
Reading just those columns and decoding just `data` (upcast to the current schema, as the ledger
does) was a third of a sweep's reading cost at 1,000 due cases (issue #16). The sweep only reads
here; it still appends through the ledger.
"""
from __future__ import annotations

import json
from typing import Iterable, NamedTuple

from sqlalchemy import Connection, String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY

from minqing import contract
from minqing.ledger import events_table


class DueEvent(NamedTuple):
    """An event as the fold reads it (the fields of RecordedEvent that CaseFile's rules use)."""
    event_id: str
    version: int
    type: str
    data: dict
    recorded_at: str


_COLUMNS = (events_table.c.stream, events_table.c.event_id, events_table.c.version, events_table.c.type,
            events_table.c.schema_version, events_table.c.data, events_table.c.recorded_at)


def read_due_streams(conn: Connection, streams: Iterable[str]) -> dict[str, list[DueEvent]]:
    """{stream: its events in version order}, every stream asked for (empty when it has none)."""
    wanted = list(dict.fromkeys(streams))
    out: dict[str, list[DueEvent]] = {s: [] for s in wanted}
    if not wanted:
        return out
    # PostgreSQL: one array parameter, as Ledger.read_streams (up to 10,000 streams in a round).
    match = (events_table.c.stream == any_(bindparam("streams", wanted, type_=ARRAY(String)))
             if conn.dialect.name == "postgresql" else events_table.c.stream.in_(wanted))
    query = select(*_COLUMNS).where(match).order_by(events_table.c.stream, events_table.c.version)
    upcast, loads = contract.upcast, json.loads
    for stream, event_id, version, type_, schema_version, data, recorded_at in conn.execute(query).all():
        out[stream].append(DueEvent(event_id, version, type_, upcast(type_, schema_version, loads(data))[1],
                                    recorded_at))
    return out
