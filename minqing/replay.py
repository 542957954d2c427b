"""Fast replay of the ledger into one projection, for `consumer.rebuild` on PostgreSQL (issue #16).

A rebuild replays the whole ledger into freshly emptied tables, with the projection's service
stopped: nothing else writes them, and nothing needs the per-event machinery of a live follower
(full `RecordedEvent`s, hash and event id, one log line per event). A projection that offers a
`replayer()` — an object that keeps what it learns between batches (e.g. its case states) with
`prepare(events, read) -> job`, `write(conn, job)` and optionally `begin(conn)` / `end(conn)`, see
`run` — is replayed here:

- a **reader thread** pages through the ledger on its own connection (plain psycopg, keyset pages
  in position order, only the projection's event types, up to the head read at the start) and
  decodes each row into a slim `ReplayedEvent` (type, data upcast as the contract says, county,
  recorded time, position, stream) ahead of the main thread;
- the main thread has the replayer prepare `BATCH_EVENTS` events at a time (attribution, in
  memory) while a **writer thread** has PostgreSQL take in the previous batch (`_Writer`): one
  transaction for the whole replay, a savepoint per batch, the checkpoint (locked, as a
  follower's) stored with the last one.

Anything that goes wrong (a bad event, the database away) ends the fast replay: what was written
before the failing batch is committed with its checkpoint (or, if the transaction itself is lost,
nothing: the projection is at checkpoint 0, emptied), and `consumer.rebuild` hands the rest to an
ordinary `Follower`, whose retry-in-place, parking and holding rules apply unchanged. The fast
replay itself never parks.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Iterable, Iterator

from minqing import checkpoints, contract
from minqing.db import write_transaction

log = logging.getLogger("minqing.replay")

PAGE = 2500              # events per read (one keyset query)
BATCH_EVENTS = 10_000    # events per batch (one savepoint, one COPY)


class ReplayedEvent:
    """What a projection's replayer sees of an event: enough for attribution, not the hash chain."""
    __slots__ = ("position", "stream", "type", "data", "recorded_at", "county")

    def __init__(self, position: int, stream: str, type_: str, data: dict, recorded_at: str, county: str):
        self.position, self.stream, self.type = position, stream, type_
        self.data, self.recorded_at, self.county = data, recorded_at, county


_QUERY = ("SELECT position, stream, type, schema_version, data, metadata, recorded_at FROM ledger_events "
          "WHERE position > %s AND position <= %s{types} ORDER BY position")


def county_of(metadata: str) -> str:
    """The county of an event's stored metadata. The ledger stores it as canonical JSON (keys sorted:
    `county` last), so the value is the text between `"county":"` and the closing `"}`; anything
    else (an escape in the value, another layout) is parsed as JSON."""
    at = metadata.rfind('"county":"')
    if at >= 0 and metadata.endswith('"}'):
        value = metadata[at + 10:-2]
        if '"' not in value and "\\" not in value:
            return value
    return json.loads(metadata)["county"]


def decode(row: tuple) -> ReplayedEvent:
    position, stream, type_, schema_version, data, metadata, recorded_at = row
    _, data = contract.upcast(type_, schema_version, json.loads(data))
    return ReplayedEvent(position, stream, type_, data, recorded_at, county_of(metadata))


def pages(engine, after: int, upto: int, types: Iterable[str] | None, page: int | None = None
          ) -> Iterator[list[ReplayedEvent]]:
    """Decoded events after `after` up to `upto`, a page at a time, on a connection of their own.

    One query through a server-side cursor (one snapshot, one plan: the primary key's order), not a
    query per page: with the head as upper bound and the statistics of a fresh table, PostgreSQL
    planned each page as a scan and sort of everything up to the head."""
    page = page or PAGE
    wanted = sorted(types) if types is not None else None
    query = _QUERY.format(types=" AND type = ANY(%s)" if wanted is not None else "")
    raw = engine.raw_connection()
    conn = raw.driver_connection
    try:
        with conn.cursor(name="minqing_replay") as cur:
            cur.itersize = page
            cur.execute(query, (after, upto, wanted) if wanted is not None else (after, upto))
            while True:
                rows = cur.fetchmany(page)
                if not rows:
                    return
                yield [decode(r) for r in rows]
    finally:
        conn.rollback()               # the read's transaction: nothing to keep
        raw.close()


class _Reader(threading.Thread):
    """Reads and decodes pages ahead of the writer (a few pages at most, then it waits)."""

    def __init__(self, engine, after: int, upto: int, types):
        super().__init__(name="replay-reader", daemon=True)
        self.args = (engine, after, upto, types)
        self.out: queue.Queue = queue.Queue(maxsize=4)
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            for page in pages(*self.args):
                while not self.stopping.is_set():
                    try:
                        self.out.put(page, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self.stopping.is_set():
                    return
            self.out.put(None)
        except BaseException as exc:       # handed to the writer, which ends the fast replay
            self.out.put(exc)

    def batches(self, size: int) -> Iterator[list[ReplayedEvent]]:
        """Events in groups of about `size` (whole pages), in position order."""
        pending: list[ReplayedEvent] = []
        while True:
            item = self.out.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                break
            pending += item
            if len(pending) >= size:
                yield pending
                pending = []
        if pending:
            yield pending

    def stop(self) -> None:
        self.stopping.set()
        try:
            while True:
                self.out.get_nowait()
        except queue.Empty:
            pass
        self.join(timeout=5)


class _Read:
    def __init__(self, fn):
        self.fn, self.done, self.result, self.error = fn, threading.Event(), None, None

    def run(self, conn, failure: BaseException | None) -> None:
        try:
            if failure is not None:
                raise failure
            with conn.begin_nested():
                self.result = self.fn(conn)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


class _Writer(threading.Thread):
    """Writes the replayer's prepared batches in order, while the main thread prepares the next one
    (PostgreSQL takes in a batch while Python attributes the next).

    One transaction for the whole replay, holding the checkpoint row locked: `replayer.begin(conn)`
    may set the tables up for bulk loading (assessment drops its indexes, built again at the end,
    several times cheaper than keeping them up row by row), each batch is written under a savepoint,
    and `replayer.end(conn)` and the checkpoint close it. A batch that fails is rolled back to its
    savepoint and what came before it is committed; a replay that is killed leaves the emptied
    projection at checkpoint 0, as it started."""

    def __init__(self, engine, name: str, replayer, start: int, on_progress):
        super().__init__(name="replay-writer", daemon=True)
        self.engine, self.name, self.replayer, self.on_progress = engine, name, replayer, on_progress
        self.start_position = self.reached = start
        self.jobs: queue.Queue = queue.Queue(maxsize=1)
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with write_transaction(self.engine) as conn:
                current = checkpoints.load(conn, self.name, lock=True)
                if current != self.reached:
                    raise RuntimeError(f"{self.name}: checkpoint moved to {current} before the replay")
                begin, end = getattr(self.replayer, "begin", None), getattr(self.replayer, "end", None)
                if begin is not None:
                    begin(conn)
                self._write_all(conn)
                if end is not None:
                    end(conn)
                checkpoints.save(conn, self.name, self.reached)
        except BaseException as exc:        # nothing was committed
            self.failure = self.failure or exc
            self.reached = self.start_position
            while True:                            # let the main thread finish
                item = self.jobs.get()
                if item is None:
                    return
                if isinstance(item, _Read):
                    item.run(None, self.failure)

    def _write_all(self, conn) -> None:
        while True:
            item = self.jobs.get()
            if item is None:
                return
            if isinstance(item, _Read):
                item.run(conn, self.failure)
                continue
            if self.failure is not None:
                continue                   # drain: nothing after a failed batch is written
            job, last, count = item
            try:
                with conn.begin_nested():
                    self.replayer.write(conn, job)
            except Exception as exc:
                self.failure = exc
                continue
            self.reached = last
            if self.on_progress is not None:
                self.on_progress(last, count)

    def read(self, fn):
        """fn(conn) in the replay's transaction, after every batch submitted so far: its result."""
        self._check()
        request = _Read(fn)
        self.jobs.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def submit(self, job, last: int, count: int) -> None:
        self._check()
        self.jobs.put((job, last, count))

    def finish(self) -> int:
        self.jobs.put(None)
        self.join()
        self._check()
        return self.reached

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure


def run(ledger, name: str, types, replayer, *, on_progress=None) -> int:
    """Replay the ledger after `name`'s checkpoint up to the head read now through `replayer`; return
    the checkpoint reached (the last event applied: a follower takes it on to the head). Raises
    whatever stopped it; the checkpoint is then the last committed batch's.

    `replayer.prepare(events, read)` (main thread) turns a batch into a job, in memory; when it must
    read the projection's tables it calls `read(fn)`, which runs `fn(conn)` in the writer's
    transaction (which alone sees the replay's own writes) after the batches before. `replayer.write
    (conn, job)` (writer thread) writes a job; `begin(conn)` and `end(conn)`, if the replayer has
    them, come before the first and after the last (or the failed) batch."""
    engine = ledger.engine
    with write_transaction(engine) as conn:
        start = checkpoints.load(conn, name, lock=True)
    head = ledger.head()[0]
    reader = _Reader(engine, start, head, types)
    writer = _Writer(engine, name, replayer, start, on_progress)
    reader.start()
    writer.start()
    try:
        try:
            for events in reader.batches(BATCH_EVENTS):
                job = replayer.prepare(events, writer.read)
                writer.submit(job, events[-1].position, len(events))
        finally:
            reader.stop()
    finally:
        reached = writer.finish()      # what was prepared before a failure is still written
    return reached
