"""Group commit for the ledger's appends on PostgreSQL: appends that wait for the append lock go in
together, as one call of minqing_append (minqing.ledger_pg), under one lock hold and one WAL flush.

Why: every append holds the ledger's head row from its lock to its commit, so appends are serial, and
each pays one commit (a WAL flush) and one round trip while every other writer of the process waits.
With several writers in one process (a service's workers, the bench's threads), those waiting appends
are now taken up by the writer that gets the lock next — the *leader* — and sent as one call. Each
append stays a *group* of its own inside that call: it is decided on its own (idempotent ids, expected
versions) in the order the groups were queued, and gets its own answer, exactly as if it had been sent
alone. Nothing is delayed on purpose: a writer that finds nobody ahead of it goes at once; grouping
happens only when writers would otherwise wait in line.

Only appends that run in a transaction of their own are grouped. An append that joins its caller's
transaction (`conn=`) cannot share a commit with anyone, and goes alone (a one-group call).

Failure: if a call of several groups raises (say, one caller's data breaks a constraint), every group
of it is sent again on its own, so each caller gets its own answer or its own exception; a group that
did commit before a lost connection comes back as 'recorded' (ids are idempotent). A call carries at
most MAX_EVENTS events, so a lock hold stays short, and never two groups with a common event id (the
later waits for the next call, where it finds the first recorded).
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from sqlalchemy import Engine, create_engine, event

from minqing import contract, ledger_pg
from minqing.chain import canonical_json, json_string

MAX_EVENTS = 1000


@dataclass
class Group:
    """One caller's append, encoded for minqing_append (stream indexes are local to the group)."""
    streams: list[str]
    w_stream: list[int]
    w_expected: list[int | None]
    e_stream: list[int]
    ids: list[str]
    types: list[str]
    schemas: list[int]
    datas: list[str]
    metas: list[str]
    heads: list[str]
    tails: list[str]
    recorded_at: str


@dataclass
class Outcome:
    """A group's answer: status 'ok' (with positions, versions, hashes per event), 'recorded', or
    'conflict' (with the stream and its expected and actual versions)."""
    status: str
    positions: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    stream: str | None = None
    expected: int | None = None
    actual: int | None = None


def arguments(groups: Sequence[Group]) -> tuple:
    """The parameters of one minqing_append call carrying `groups`, in order."""
    streams: dict[str, int] = {}
    w_stream: list[int] = []
    w_expected: list[int | None] = []
    g_writes: list[int] = []
    e_stream: list[int] = []
    e_group: list[int] = []
    g_events: list[int] = []
    g_at: list[str] = []
    ids: list[str] = []
    types: list[str] = []
    schemas: list[int] = []
    datas: list[str] = []
    metas: list[str] = []
    heads: list[str] = []
    tails: list[str] = []
    for group in groups:
        index = [streams.setdefault(name, len(streams) + 1) for name in group.streams]
        w_stream += [index[i - 1] for i in group.w_stream]
        w_expected += group.w_expected
        g_writes.append(len(w_stream))
        e_stream += [index[i - 1] for i in group.e_stream]
        e_group += [len(g_events) + 1] * len(group.e_stream)
        g_events.append(len(e_stream))
        g_at.append(group.recorded_at)
        ids += group.ids
        types += group.types
        schemas += group.schemas
        datas += group.datas
        metas += group.metas
        heads += group.heads
        tails += group.tails
    return (list(streams), w_stream, w_expected, g_writes, e_stream, e_group, g_events, g_at,
            ids, types, schemas, datas, metas, heads, tails, ",".join(dict.fromkeys(types)))


def outcomes(groups: Sequence[Group], row: Sequence[Any]) -> list[Outcome]:
    """Split minqing_append's answer into one Outcome per group."""
    statuses, details, expected, actual, positions, versions, hashes = row
    out = []
    start = 0
    for g, group in enumerate(groups):
        end = start + len(group.ids)
        if statuses[g] == "ok":
            out.append(Outcome("ok", positions[start:end], versions[start:end], hashes[start:end]))
        elif statuses[g] == "conflict":
            out.append(Outcome("conflict", stream=details[g], expected=expected[g], actual=actual[g]))
        else:
            out.append(Outcome(statuses[g]))
        start = end
    return out


class _Waiting:
    __slots__ = ("group", "outcome", "error", "done", "lead", "woken")

    def __init__(self, group: Group):
        self.group = group
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False                 # handed the lead: send what is queued
        self.woken = threading.Event()    # answered, or handed the lead


class Combiner:
    """Leader/follower group commit for one database (one per append pool).

    `call(groups)` runs one minqing_append call in a transaction of its own and returns its row. A
    writer queues its group; if nobody leads, it leads: it sends the front of the queue (up to
    MAX_EVENTS events, its own group among them) in one call, answers every writer in it, and then
    hands the lead to the first writer still queued — who sends everything that queued meanwhile — or
    lays it down. Other writers sleep until answered or handed the lead: one wake-up each, no lock
    convoy. Under eventlet (monkey-patched) the lock and events are green, so green threads group the
    same way.
    """

    def __init__(self, call: Callable[[Sequence[Group]], Sequence[Any]]):
        self._call = call
        self._lock = threading.Lock()   # guards _queue and _leading; held for microseconds, never over a call
        self._queue: list[_Waiting] = []
        self._leading = False
        self.calls = 0                  # calls sent (each a transaction): for the bench

    def submit(self, group: Group) -> Outcome:
        mine = _Waiting(group)
        with self._lock:
            self._queue.append(mine)
            if not self._leading:
                self._leading = mine.lead = True
        if not mine.lead:
            mine.woken.wait()
        if mine.lead:
            self._lead(mine)
        if mine.error is not None:
            raise mine.error
        assert mine.outcome is not None
        return mine.outcome

    def _lead(self, mine: _Waiting) -> None:
        """Send the front of the queue until `mine` is answered; then pass the lead on or lay it down
        (also when the leader is stopped mid-call, so the others are never left without one)."""
        try:
            while not mine.done:
                with self._lock:
                    batch = self._take()
                self._send(batch, mine)
        finally:
            with self._lock:
                if self._queue:
                    first = self._queue[0]
                    first.lead = True
                    first.woken.set()
                else:
                    self._leading = False

    def _take(self) -> list[_Waiting]:
        """The front of the queue: at most MAX_EVENTS events (at least one group), no two groups
        sharing an event id."""
        batch: list[_Waiting] = []
        seen: set[str] = set()
        events = 0
        for waiting in self._queue:
            ids = waiting.group.ids
            if batch and (events + len(ids) > MAX_EVENTS or not seen.isdisjoint(ids)):
                break
            batch.append(waiting)
            seen.update(ids)
            events += len(ids)
        del self._queue[:len(batch)]
        return batch

    def _send(self, batch: list[_Waiting], mine: _Waiting) -> None:
        groups = [w.group for w in batch]
        self.calls += 1
        try:
            answers = outcomes(groups, self._call(groups))
            for waiting, answer in zip(batch, answers):
                waiting.outcome = answer
        except Exception as exc:           # noqa: BLE001 - handed to its caller below
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for waiting in batch:      # each caller gets its own answer or its own exception
                    try:
                        waiting.outcome = outcomes([waiting.group], self._call([waiting.group]))[0]
                    except Exception as one:   # noqa: BLE001
                        waiting.error = one
        except BaseException:
            # The leader itself is being stopped (a killed green thread, KeyboardInterrupt): its call
            # may or may not have committed. The others' groups go back to the front of the queue for
            # the next leader (a group that did commit comes back 'recorded': ids are idempotent); the
            # leader's own group goes with it, unanswered, as a lone append stopped mid-call would.
            with self._lock:
                self._queue[:0] = [w for w in batch if w is not mine]
            raise
        for waiting in batch:
            waiting.done = True
            waiting.woken.set()


# ---- the PostgreSQL side: encoding an append, the autocommit pool, one combiner per database ---------

def encode(writes: Sequence[Any], pairs: Sequence[tuple[Any, Any]], recorded_at: str,
           expected: list[int | None]) -> Group:
    """One append (its StreamWrites, their (write, event) pairs, and each write's expected version,
    None for any) as minqing_append's arrays: everything that needs no lock is encoded here."""
    streams = list(dict.fromkeys(w.stream for w in writes))
    index = {stream: i for i, stream in enumerate(streams, 1)}
    group = Group(streams, [index[w.stream] for w in writes], expected, [], [], [], [], [], [], [], [],
                  recorded_at)
    # The fields of chain_hash's body that are known before the lock, JSON-encoded as canonical_json
    # encodes them inside its list (strings by json's own encoder, ints by repr): the function
    # splices in position and version (see minqing.ledger_pg). Metadata is often shared by a
    # batch's events: encoded once per distinct value.
    at = json_string(recorded_at)
    encoded_meta: dict[Any, tuple[str, str]] = {}
    for write, new in pairs:
        data = new.data
        data_text = canonical_json(data if type(data) is dict else dict(data))
        meta = encoded_meta.get(new.metadata)
        if meta is None:
            meta_text = canonical_json(new.metadata.to_dict())
            meta = encoded_meta[new.metadata] = (meta_text, json_string(meta_text))
        schema_version = contract.event_type(new.type).version
        group.e_stream.append(index[write.stream])
        group.ids.append(new.event_id)
        group.types.append(new.type)
        group.schemas.append(schema_version)
        group.datas.append(data_text)
        group.metas.append(meta[0])
        group.heads.append(f"{json_string(new.event_id)},{json_string(write.stream)}")
        group.tails.append(f"{json_string(new.type)},{int(schema_version)!r},{json_string(data_text)},{meta[1]},{at}")
    return group


def call_in(dbapi_connection: Any, groups: Sequence[Group]) -> list[Outcome]:
    """One minqing_append call on a psycopg connection, in whatever transaction it is in."""
    return outcomes(groups, dbapi_connection.execute(ledger_pg.CALL, ledger_pg.wire(arguments(groups))).fetchone())


_APPEND_ENGINES: "weakref.WeakKeyDictionary[Engine, Engine]" = weakref.WeakKeyDictionary()
_COMBINERS: "weakref.WeakKeyDictionary[Engine, Combiner]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()    # two threads must not each build a pool (or a combiner) for one engine


def append_engine(engine: Engine) -> Engine:
    """A pool beside `engine` for one-statement appends on PostgreSQL: autocommit connections and no
    pre-ping (which would be a second round trip). A stale connection fails the call with an
    OperationalError and is retried once on a fresh one — safe, because a retried append with the same
    event ids is idempotent. Disposed with `engine`."""
    with _LOCK:
        fast = _APPEND_ENGINES.get(engine)
        if fast is None:
            fast = create_engine(engine.url, pool_size=engine.pool.size(), max_overflow=engine.pool.size(),
                                 pool_pre_ping=False)
            event.listen(fast, "connect", lambda dbapi_conn, _record: setattr(dbapi_conn, "autocommit", True))
            event.listen(engine, "engine_disposed", lambda _engine, fast=fast: fast.dispose())
            _APPEND_ENGINES[engine] = fast
        return fast


def combiner(engine: Engine) -> Combiner:
    """The group commit of `engine`'s appends that run in a transaction of their own."""
    with _LOCK:
        found = _COMBINERS.get(engine)
    if found is not None:
        return found
    fast = append_engine(engine)

    def call(groups: Sequence[Group]) -> Sequence[Any]:
        import psycopg
        args = ledger_pg.wire(arguments(groups))
        for attempt in (1, 2):
            raw = fast.raw_connection()
            try:
                return raw.driver_connection.execute(ledger_pg.CALL, args).fetchone()
            except psycopg.OperationalError:
                raw.invalidate()        # a stale connection (server restarted): retry once on a new one
                if attempt == 2:
                    raise
            finally:
                raw.close()
        raise AssertionError("unreachable")

    with _LOCK:
        return _COMBINERS.setdefault(engine, Combiner(call))
