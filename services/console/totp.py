"""Optional second factor for console accounts (issue #14.1): time-based one-time passwords, RFC 6238
(TOTP: HMAC-SHA1, 6 digits, 30-second steps — what every authenticator app reads from an
`otpauth://` URI), with the standard library only.

- **Enrol** (`/console/totp`, any logged-in person): a fresh 160-bit secret is shown once, as an
  `otpauth://totp/…` URI and as base32 text; it is stored only when the person types a code it
  gives, so a secret nobody copied never locks anyone out.
- **Log in**: after the password, an enrolled account is asked for the code. Between the two steps
  the browser holds a *pending* token: the account id and an expiry (5 minutes), signed with an HMAC
  keyed by the account's password hash and TOTP secret — server-side values the browser never sees,
  so the token proves the password was right without a table of its own, and a password reset or a
  TOTP reset voids it.
- **Check**: the code of the current step or one step either side (±30 s of clock drift), time from
  the injected clock; a code is accepted once: the step it matched is stored (`totp_last_step`) and
  only a later step is accepted after it, so a code seen over a shoulder cannot be replayed. Wrong
  codes count as wrong passwords (five in a row lock the account for fifteen minutes).
- **Reset**: `minqing account totp-reset NAME` (an admin, when a phone is lost) removes the secret.

The secret is kept in the clear in `console_accounts.totp_secret` (a TOTP secret must be read back to
compute codes; it cannot be hashed like a password): the database is the boundary, as for the
vault's keys' configuration.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

from sqlalchemy import Engine, or_, select, update

from minqing.clock import SYSTEM_CLOCK, Clock, isoformat, parse_instant
from minqing.db import read_transaction, write_transaction
from services.console import accounts

STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1                  # steps accepted either side of the current one
PENDING = timedelta(minutes=5)
ISSUER = "Minqing"

t = accounts.accounts_table


def new_secret() -> str:
    """160 random bits (RFC 4226's recommended length), base32 without padding, as apps expect."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    clean = secret.replace(" ", "").upper()
    return base64.b32decode(clean + "=" * (-len(clean) % 8))


def hotp(key: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 §5.3: HMAC-SHA1 of the counter, dynamically truncated to `digits` decimal digits."""
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


def step_at(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def code_at(secret: str, now: datetime) -> str:
    return hotp(_key(secret), step_at(now))


def matching_step(secret: str, code: str, now: datetime, after: int | None = None) -> int | None:
    """The step within ±WINDOW of `now` whose code is `code` and which is later than `after`, or None."""
    code = (code or "").strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    key, current = _key(secret), step_at(now)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if (after is None or step > after) and hmac.compare_digest(hotp(key, step), code):
            return step
    return None


def uri(secret: str, username: str, county: str) -> str:
    """The `otpauth://` URI an authenticator app takes (Google Authenticator's key URI format)."""
    label = quote(f"{ISSUER}:{username}@{county}")
    return f"otpauth://totp/{label}?" + urlencode({"secret": secret, "issuer": ISSUER, "algorithm": "SHA1",
                                                  "digits": DIGITS, "period": STEP_SECONDS})


# ---- the account's second factor --------------------------------------------------------------------

def enrolled(engine: Engine, account_id: str) -> bool:
    with read_transaction(engine) as conn:
        return conn.execute(select(t.c.totp_secret).where(t.c.account_id == account_id)).scalar() is not None


def enrol(engine: Engine, account_id: str, secret: str, code: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """Store `secret` for the account if `code` is its code now (and no secret is stored yet)."""
    try:
        step = matching_step(secret, code, clock.now())
    except (ValueError, TypeError):          # not base32: a tampered form
        return False
    if step is None:
        return False
    with write_transaction(engine) as conn:
        done = conn.execute(update(t).where(t.c.account_id == account_id, t.c.totp_secret.is_(None))
                            .values(totp_secret=secret, totp_last_step=step))
    return done.rowcount == 1


def reset(engine: Engine, username: str) -> str:
    """Remove the account's second factor (a lost phone); returns its id, for ending its sessions."""
    with write_transaction(engine) as conn:
        row = conn.execute(select(t.c.account_id).where(t.c.username == username)).first()
        if row is None:
            raise accounts.AccountError("username", f"no account {username!r}")
        conn.execute(update(t).where(t.c.account_id == row.account_id).values(totp_secret=None, totp_last_step=None))
    return row.account_id


def _signature(row, expires: int) -> str:
    key = f"{row.password_hash}|{row.totp_secret}".encode()
    return hmac.new(key, f"{row.account_id}|{expires}".encode(), hashlib.sha256).hexdigest()


def pending_token(engine: Engine, account_id: str, clock: Clock = SYSTEM_CLOCK) -> str:
    """The token the browser carries from the password step to the code step (module docstring)."""
    with read_transaction(engine) as conn:
        row = conn.execute(select(t).where(t.c.account_id == account_id)).first()
    expires = int((clock.now() + PENDING).timestamp())
    return f"{account_id}.{expires}.{_signature(row, expires)}"


def check_code(engine: Engine, pending: str, code: str, clock: Clock = SYSTEM_CLOCK) -> accounts.Account:
    """The account whose password step `pending` proves, if `code` is a fresh code of its secret;
    else accounts.LoginRefused ("wrong": also an expired or forged pending token; "locked")."""
    try:
        account_id, expires_text, signature = (pending or "").split(".")
        expires = int(expires_text)
    except ValueError:
        raise accounts.LoginRefused("wrong") from None
    with read_transaction(engine) as conn:
        row = conn.execute(select(t).where(t.c.account_id == account_id)).first()
    now = clock.now()
    if row is None or row.disabled or row.totp_secret is None or now.timestamp() > expires or \
            not hmac.compare_digest(_signature(row, expires), signature):
        raise accounts.LoginRefused("wrong")
    if row.locked_until and parse_instant(row.locked_until) > now:
        left = parse_instant(row.locked_until) - now
        raise accounts.LoginRefused("locked", max(1, -(-int(left.total_seconds()) // 60)))
    step = matching_step(row.totp_secret, code, now, after=row.totp_last_step)
    with write_transaction(engine) as conn:
        if step is not None:       # the step moves forward once: a code is never taken twice, even at once
            taken = conn.execute(update(t).where(t.c.account_id == account_id,
                                                 or_(t.c.totp_last_step.is_(None), t.c.totp_last_step < step))
                                 .values(totp_last_step=step, failed_attempts=0, locked_until=None))
            if taken.rowcount == 1:
                return accounts.Account(row.account_id, row.username, row.role, row.county, row.unit, row.cadre,
                                        bool(row.must_change_password))
        failures = conn.execute(select(t.c.failed_attempts).where(t.c.account_id == account_id)).scalar() + 1
        values = {"failed_attempts": failures}
        if failures >= accounts.MAX_FAILURES:
            values = {"failed_attempts": 0, "locked_until": isoformat(now + accounts.LOCKOUT)}
        conn.execute(update(t).where(t.c.account_id == account_id).values(**values))
    if failures >= accounts.MAX_FAILURES:
        raise accounts.LoginRefused("locked", int(accounts.LOCKOUT.total_seconds() // 60))
    raise accounts.LoginRefused("wrong")
