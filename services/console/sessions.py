"""Console sessions. Decision (docs/console.md): a session *is* a short-lived access token of the
kernel's token table (`minqing.access`), issued at login for the account's role, county, unit and
cadre, and kept by the browser in an HttpOnly, SameSite=Strict cookie. The console then calls the
services' own HTTP API with it, so every read and action goes through the same routes, the same
access decision, the same 409s and the same access record as an API client's — there is no second
authorisation path to keep in step. The server keeps only the token's hash (as for any token), plus
this table: which account a session belongs to, its CSRF token, and its idle expiry.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Column, Engine, MetaData, String, Table, select, update

from minqing import access
from minqing.clock import SYSTEM_CLOCK, Clock, isoformat, parse_instant
from minqing.db import read_transaction, write_transaction
from minqing.http import ApiError
from services.console import accounts

LIFETIME = timedelta(hours=10)     # a working day; the token itself expires then too
IDLE = timedelta(hours=2)          # a session not used for this long ends

metadata_obj = MetaData()

sessions_table = Table(
    "console_sessions", metadata_obj,
    Column("token_id", String(16), primary_key=True),
    Column("account_id", String(12), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("last_seen", String(32), nullable=False),
    Column("ended_at", String(32), nullable=True),
)


@dataclass(frozen=True)
class Session:
    token: str                  # the bearer token, for calling the API on the person's behalf
    token_id: str
    csrf: str
    account: accounts.Account

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf, sent)


def open_session(engine: Engine, account: accounts.Account, clock: Clock = SYSTEM_CLOCK) -> str:
    """Issue the session's token; return it (the cookie's value)."""
    token_id, token = access.issue_token(engine, account.role, account.county, unit=account.unit,
                                         cadre=account.cadre, label=f"console session of account {account.account_id}",
                                         days=1, clock=clock)
    now = clock.now()
    with write_transaction(engine) as conn:
        conn.execute(update(access.tokens_table).where(access.tokens_table.c.token_id == token_id)
                     .values(expires_at=isoformat(now + LIFETIME)))
        conn.execute(sessions_table.insert().values(token_id=token_id, account_id=account.account_id,
                                                    csrf=secrets.token_urlsafe(32), last_seen=isoformat(now)))
    return token


def load(engine: Engine, cookie: str | None, clock: Clock = SYSTEM_CLOCK) -> Session | None:
    """The live session behind a cookie, or None (expired, idle, ended, or the account disabled)."""
    if not cookie:
        return None
    now = clock.now()
    with read_transaction(engine) as conn:
        try:
            principal = access.authenticate(conn, f"Bearer {cookie}", clock)
        except ApiError:
            return None
        row = conn.execute(select(sessions_table).where(sessions_table.c.token_id == principal.token_id)).first()
        if row is None or row.ended_at is not None or parse_instant(row.last_seen) + IDLE <= now:
            return None
        account = accounts.get(conn, row.account_id)
    if account is None:
        return None
    if parse_instant(row.last_seen) + timedelta(minutes=1) <= now:     # not a write on every click
        with write_transaction(engine) as conn:
            conn.execute(update(sessions_table).where(sessions_table.c.token_id == row.token_id)
                         .values(last_seen=isoformat(now)))
    return Session(cookie, row.token_id, row.csrf, account)


def end(engine: Engine, token_id: str, clock: Clock = SYSTEM_CLOCK) -> None:
    access.revoke_token(engine, token_id, clock)
    with write_transaction(engine) as conn:
        conn.execute(update(sessions_table).where(sessions_table.c.token_id == token_id)
                     .values(ended_at=isoformat(clock.now())))


def end_all(engine: Engine, account_id: str, clock: Clock = SYSTEM_CLOCK) -> int:
    """End every session of an account (when it is disabled or its password reset)."""
    with read_transaction(engine) as conn:
        ids = conn.execute(select(sessions_table.c.token_id).where(sessions_table.c.account_id == account_id,
                                                                   sessions_table.c.ended_at.is_(None))).scalars().all()
    for token_id in ids:
        end(engine, token_id, clock)
    return len(ids)
