"""Idempotent reports: a client that sends `Idempotency-Key: <key>` with `POST /api/v1/cases` (or
Open311's `POST requests`) and retries — after a timeout, a dropped connection, a 503 — gets the
first answer again, never a second case.

Rules (docs/intake.md, "Idempotent reports"):

- A key belongs to the principal who sent it: the same key from another token's actor or for
  another county is another key.
- The key is stored in the same transaction as the report's registration and append, so a crash
  can never leave a case without its key or a key without its case.
- The first answer (status and body, the tracking number and PIN included) is kept sealed under the
  vault's master key for KEEP (24 h); a retry within that time gets it byte for byte, with the header
  `Idempotent-Replayed: true`. After that the row is deleted and the key may be used afresh.
- The same key with a different request (any field, even the order of the same values does not
  matter: the request is compared in a canonical form) is refused, 422 naming `Idempotency-Key`.
- Only a registered report is remembered: a refused request (4xx) writes nothing, so the client
  may correct it and send it again under the same key.
- Two requests with one key at the same instant: one registers, the other waits for it and gets
  its answer (SQLite: BEGIN IMMEDIATE serialises them; PostgreSQL: the second's insert of the key
  waits on the first's uncommitted row, fails on commit, and the second reads the first's answer).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from minqing.clock import Clock, isoformat
from minqing.db import write_transaction
from minqing.http import ApiError
from minqing.vault import Vault
from services.intake.tables import idempotency_keys_table as keys_table

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"      # set on an answer that repeats an earlier one
KEEP = timedelta(hours=24)
MAX_KEY_LENGTH = 255
PURGE_BATCH = 100      # expired rows removed per new key (the table never grows past a day's keys)


@dataclass(frozen=True)
class Answer:
    status: int
    body: object
    replayed: bool = False


def key_of(headers) -> str | None:
    """The request's Idempotency-Key, or None; 422 naming the header when it is not a usable key."""
    key = headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not all(" " < ch <= "~" for ch in key):
        raise ApiError(422, "invalid_fields", "the Idempotency-Key header is not a usable key",
                       {HEADER: [f"1 to {MAX_KEY_LENGTH} printable ASCII characters without spaces "
                                 "(a UUID is a good key)"]})
    return key


def scope_of(county: str, actor: str) -> str:
    """Whose key it is: a key is the principal's own, in one county."""
    return f"{county}|{actor}"


def fingerprint(request_form: object) -> str:
    """What makes two requests the same request: their content in a canonical form."""
    canonical = json.dumps(request_form, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def once(engine: Engine, vault: Vault, clock: Clock, scope: str, key: str | None, request_fingerprint: str,
         register: Callable) -> Answer:
    """Run `register(conn) -> Answer` in a write transaction, at most once per (scope, key)."""
    if key is None:
        with write_transaction(engine) as conn:
            return register(conn)
    for attempt in (1, 2):
        try:
            with write_transaction(engine) as conn:
                now = clock.now()
                where = (keys_table.c.scope == scope) & (keys_table.c.key == key)
                row = conn.execute(select(keys_table).where(where)).first()
                if row is not None and row.expires_at <= isoformat(now):
                    conn.execute(delete(keys_table).where(where))
                    row = None
                if row is not None:
                    return _replay(vault, row, request_fingerprint)
                _purge_expired(conn, now)
                # Written first: on PostgreSQL a concurrent request with the same key waits here
                # until this transaction ends, then fails on the key and reads our answer.
                conn.execute(keys_table.insert().values(scope=scope, key=key, fingerprint=request_fingerprint,
                                                        expires_at=isoformat(now + KEEP)))
                answer = register(conn)
                sealed = vault.seal(json.dumps(answer.body, ensure_ascii=False).encode())
                conn.execute(update(keys_table).where(where).values(status=answer.status, answer=sealed))
                return answer
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _replay(vault: Vault, row, request_fingerprint: str) -> Answer:
    if row.fingerprint != request_fingerprint:
        raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used for a different request",
                       {HEADER: ["already used for a different request: send a new key for a new report"]})
    return Answer(row.status, json.loads(vault.unseal(row.answer)), replayed=True)


def _purge_expired(conn, now) -> None:
    stale = select(keys_table.c.scope, keys_table.c.key).where(
        keys_table.c.expires_at <= isoformat(now)).limit(PURGE_BATCH)
    for scope, key in conn.execute(stale).all():
        conn.execute(delete(keys_table).where((keys_table.c.scope == scope) & (keys_table.c.key == key)))
