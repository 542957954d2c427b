"""Followers woken by the ledger itself on PostgreSQL: LISTEN for the append function's NOTIFY.

The append function (minqing.ledger_pg) notifies channel `minqing_ledger` when an append commits,
with the new head position and the event types appended ("1234 case.reported,case.assigned"). One
connection per process and database LISTENs; each subscriber (a service's follower) is woken only
when an append holds a type it follows. A follower woken this way reads the ledger from its
checkpoint as always (minqing.consumer): the notification carries no data, so a lost, duplicated or
late one changes nothing but when the follower looks.

Why: before, a follower learnt of an event only after the relay had published it and the broker had
delivered it, and otherwise looked every 2 s whether anything was new — four services doing nothing
still ran transactions all day. Now a follower wakes as soon as the append commits, and its
fallback look (in case a notification was lost while the listening connection was down) can be
seconds apart. When the listening connection breaks, every subscriber is woken once it is back,
since appends committed meanwhile were not notified. Broker messages still wake followers too (and
are the only wake-up on SQLite, which has no notifications).
"""
from __future__ import annotations

import logging
import select
import threading
import weakref
from typing import Callable

from sqlalchemy import Engine

from minqing.db import is_postgres
from minqing.ledger_pg import NOTIFY_CHANNEL

log = logging.getLogger("minqing.ledger_listen")

RECONNECT_SECONDS = 2.0
FALLBACK_POLL_SECONDS = 10.0     # a subscribed follower still looks this often


def parse(payload: str) -> tuple[int | None, frozenset[str] | None]:
    """(head position, event types) from a notification; types None when the payload has none (a
    notification from an older append function: wake everyone)."""
    head, _, types = payload.partition(" ")
    try:
        position = int(head)
    except ValueError:
        return None, None
    return position, frozenset(types.split(",")) if types else None


class Listener:
    """One LISTEN connection for one engine, in a daemon thread (a green thread under eventlet, whose
    patched `select` this uses), calling its subscribers' wake functions."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._subscribers: list[tuple[Callable[[], None], frozenset[str] | None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.notifications = 0

    def subscribe(self, wake: Callable[[], None], types: frozenset[str] | None) -> None:
        with self._lock:
            self._subscribers.append((wake, types))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledger-listen", daemon=True)
                self._thread.start()

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._subscribers = [(w, t) for w, t in self._subscribers if w != wake]   # == : bound methods are made anew on each access

    def _wake(self, types: frozenset[str] | None) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for wake, wanted in subscribers:
            if types is None or wanted is None or not wanted.isdisjoint(types):
                try:
                    wake()
                except Exception:       # one subscriber's trouble must not stop the others' wake-ups
                    log.exception("a ledger wake-up failed")

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._subscribers:
                    self._thread = None
                    return
            try:
                self._listen()
            except Exception as exc:     # database away: wake everyone when back (appends were missed)
                log.info("ledger notifications interrupted (%s); listening again in %.0fs", type(exc).__name__,
                         RECONNECT_SECONDS)
            self.connected.clear()
            threading.Event().wait(RECONNECT_SECONDS)

    def _listen(self) -> None:
        raw = self.engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()                 # ours alone, closed below; never back in the pool while listening
        try:
            conn.autocommit = True
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.connected.set()
            self._wake(None)         # anything appended before LISTEN took effect
            pgconn = conn.pgconn
            while True:
                with self._lock:
                    if not self._subscribers:
                        return
                readable, _, _ = select.select([conn.fileno()], [], [], 5.0)
                if not readable:
                    continue
                pgconn.consume_input()
                types: set[str] = set()
                everyone = False
                while (note := pgconn.notifies()) is not None:
                    self.notifications += 1
                    _, appended = parse(note.extra.decode("utf-8", "replace"))
                    if appended is None:
                        everyone = True
                    else:
                        types |= appended
                if pgconn.status != 0:      # CONNECTION_OK
                    raise ConnectionError("listening connection lost")
                if everyone or types:
                    self._wake(None if everyone else frozenset(types))
        finally:
            try:
                conn.close()
            except Exception:
                pass


_LISTENERS: "weakref.WeakKeyDictionary[Engine, Listener]" = weakref.WeakKeyDictionary()
_LISTENERS_LOCK = threading.Lock()


def listener(engine: Engine) -> Listener | None:
    """The process's listener for `engine`; None where there are no notifications (SQLite)."""
    if not is_postgres(engine):
        return None
    with _LISTENERS_LOCK:
        found = _LISTENERS.get(engine)
        if found is None:
            found = _LISTENERS[engine] = Listener(engine)
        return found


def subscribe(engine: Engine, wake: Callable[[], None], types: frozenset[str] | None) -> bool:
    """Call `wake` whenever an append of one of `types` (None: any) commits; False on SQLite, where
    the caller must go on polling."""
    found = listener(engine)
    if found is None:
        return False
    found.subscribe(wake, types)
    return True


def unsubscribe(engine: Engine, wake: Callable[[], None]) -> None:
    found = listener(engine) if is_postgres(engine) else None
    if found is not None:
        found.unsubscribe(wake)
