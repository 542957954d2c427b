"""The ledger interface, and an in-memory ledger for unit tests of decision functions.

`EventStore` is what a decision function may ask of a ledger: append (with an expected version,
atomically over several streams, idempotent by event id), read a stream or several, read everything
after a position, the head. `minqing.ledger.Ledger` (SQLite, PostgreSQL) and `MemoryLedger` both
provide it, and both pass the same contract suite (tests/interface/test_ledger_contract.py; the
memory run is tests/unit/test_ledger_memory.py).

`MemoryLedger` keeps rows exactly as the `ledger_events` table does (canonical JSON texts, the same
hash chain, upcasting on read), so an event read from it is the event SQLite would give. It is not a
backend: nothing survives the process, and it has no database, so it has no `engine` and a `conn=`
argument (a caller's transaction) is accepted and ignored — code that writes its own rows in the same
transaction as an append needs a real ledger, and is tested on one.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Iterator, Protocol, Sequence

from minqing import contract
from minqing.clock import SYSTEM_CLOCK, Clock, isoformat
from minqing.ledger import (ANY, GENESIS_HASH, ConcurrencyError, DuplicateEventIdError, NewEvent, RecordedEvent,
                            StreamWrite, _to_event, canonical_json, chain_hash)


class EventStore(Protocol):
    clock: Clock

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: Any = ANY, *,
               conn: Any = None) -> list[RecordedEvent]: ...

    def append_many(self, writes: Sequence[StreamWrite], *, conn: Any = None) -> list[RecordedEvent]: ...

    def stream_version(self, stream: str, *, conn: Any = None) -> int: ...

    def read_stream(self, stream: str, after_version: int = 0, *, conn: Any = None) -> list[RecordedEvent]: ...

    def read_streams(self, streams: Iterable[str], *, conn: Any = None) -> dict[str, list[RecordedEvent]]: ...

    def read_all(self, after: int = 0, limit: int = 1000, *, types: Iterable[str] | None = None,
                 upto: int | None = None, conn: Any = None) -> list[RecordedEvent]: ...

    def iter_all(self, after: int = 0, batch: int = 1000) -> Iterator[RecordedEvent]: ...

    def head(self, *, conn: Any = None) -> tuple[int, str]: ...


class MemoryLedger:
    """An `EventStore` in a list, for unit tests (see the module's docstring for what it is not)."""

    engine = None

    def __init__(self, clock: Clock = SYSTEM_CLOCK):
        self.clock = clock
        self._rows: list[dict] = []                  # position N is self._rows[N - 1]
        self._by_id: dict[str, dict] = {}
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    # ---- writing -------------------------------------------------------------------------------

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: Any = ANY, *,
               conn: Any = None) -> list[RecordedEvent]:
        return self.append_many([StreamWrite(stream, events, expected_version)])

    def append_many(self, writes: Sequence[StreamWrite], *, conn: Any = None) -> list[RecordedEvent]:
        for write in writes:
            for event in write.events:
                contract.validate_event(event.type, event.data)
        pairs = [(w, e) for w in writes for e in w.events]
        if not pairs:
            return []
        with self._lock:
            known = [e for _, e in pairs if e.event_id in self._by_id]
            if known:
                return self._already_recorded(pairs, len(known))
            versions = {w.stream: self._versions.get(w.stream, 0) for w in writes}
            for write in writes:
                if write.expected_version is not ANY and write.expected_version != versions[write.stream]:
                    raise ConcurrencyError(write.stream, write.expected_version, versions[write.stream])
            position, prev_hash = self._head()
            recorded_at = isoformat(self.clock.now())
            rows = []
            for write, event in pairs:
                position += 1
                versions[write.stream] += 1
                data_text, meta_text = canonical_json(dict(event.data)), canonical_json(event.metadata.to_dict())
                schema_version = contract.event_type(event.type).version
                prev_hash = chain_hash(prev_hash, position, event.event_id, write.stream, versions[write.stream],
                                       event.type, schema_version, data_text, meta_text, recorded_at)
                rows.append(dict(position=position, event_id=event.event_id, stream=write.stream,
                                 version=versions[write.stream], type=event.type, schema_version=schema_version,
                                 data=data_text, metadata=meta_text, recorded_at=recorded_at, hash=prev_hash))
            self._rows.extend(rows)
            self._by_id.update((r["event_id"], r) for r in rows)
            self._versions.update(versions)
        return [_to_event(r) for r in rows]

    def _already_recorded(self, pairs, known: int) -> list[RecordedEvent]:
        if known != len(pairs):
            raise DuplicateEventIdError(f"some of the events {[e.event_id for _, e in pairs]} are recorded already, some not")
        out = []
        for write, event in pairs:
            row = self._by_id[event.event_id]
            if (row["stream"], row["type"], row["data"]) != (write.stream, event.type, canonical_json(dict(event.data))):
                raise DuplicateEventIdError(f"event {event.event_id} is recorded with other content")
            out.append(_to_event(row))
        return out

    # ---- reading -------------------------------------------------------------------------------

    def _head(self) -> tuple[int, str]:
        return (self._rows[-1]["position"], self._rows[-1]["hash"]) if self._rows else (0, GENESIS_HASH)

    def head(self, *, conn: Any = None) -> tuple[int, str]:
        with self._lock:
            return self._head()

    def stream_version(self, stream: str, *, conn: Any = None) -> int:
        with self._lock:
            return self._versions.get(stream, 0)

    def read_stream(self, stream: str, after_version: int = 0, *, conn: Any = None) -> list[RecordedEvent]:
        with self._lock:
            rows = [r for r in self._rows if r["stream"] == stream and r["version"] > after_version]
        return [_to_event(r) for r in rows]

    def read_streams(self, streams: Iterable[str], *, conn: Any = None) -> dict[str, list[RecordedEvent]]:
        wanted = list(dict.fromkeys(streams))
        with self._lock:
            rows = [r for r in self._rows if r["stream"] in set(wanted)]
        out: dict[str, list[RecordedEvent]] = {s: [] for s in wanted}
        for row in rows:
            out[row["stream"]].append(_to_event(row))
        return out

    def read_all(self, after: int = 0, limit: int = 1000, *, types: Iterable[str] | None = None,
                 upto: int | None = None, conn: Any = None) -> list[RecordedEvent]:
        wanted = set(types) if types is not None else None
        with self._lock:
            rows = self._rows[max(after, 0):upto]
        rows = [r for r in rows if wanted is None or r["type"] in wanted][:limit]
        return [_to_event(r) for r in rows]

    def iter_all(self, after: int = 0, batch: int = 1000) -> Iterator[RecordedEvent]:
        while events := self.read_all(after, batch):
            yield from events
            after = events[-1].position

    def rows(self) -> list[dict]:
        """The stored rows, as `ledger_events` would hold them (for tests that check the chain)."""
        with self._lock:
            return [dict(r) for r in self._rows]
