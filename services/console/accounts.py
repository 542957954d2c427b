"""People's accounts for the console (issue #14.1): a username and a password, bound to a role, a
county and — for cadres and supervisors — a unit and a cadre id, so that a logged-in person is the
same `minqing.access.Principal` an API token would be, and the one access decision applies.

Passwords are hashed with scrypt (memory-hard, in the standard library) with a per-account salt;
the parameters are stored with the hash, so they can be raised later without breaking old accounts.
Five wrong passwords in a row lock the account for fifteen minutes. Time comes from the injected clock.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import BigInteger, Boolean, Column, Connection, Engine, Integer, MetaData, String, Table, select, update

from minqing import access
from minqing.clock import SYSTEM_CLOCK, Clock, isoformat, parse_instant
from minqing.db import read_transaction, write_transaction

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD = 10
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}     # 16 MiB per hash, about 50 ms on the 2-core box

metadata_obj = MetaData()

accounts_table = Table(
    "console_accounts", metadata_obj,
    Column("account_id", String(12), primary_key=True),      # what the access record and events name
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(300), nullable=False),    # scrypt$n$r$p$salt$hash
    Column("role", String(20), nullable=False),
    Column("county", String(40), nullable=False),
    Column("unit", String(100), nullable=True),
    Column("cadre", String(100), nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("must_change_password", Boolean, nullable=False, default=True),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("locked_until", String(32), nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("totp_secret", String(64), nullable=True),        # base32; NULL: no second factor (services/console/totp.py)
    Column("totp_last_step", BigInteger, nullable=True),     # the last TOTP step taken: never accepted again
)


class AccountError(ValueError):
    """A refusal with the field it concerns, for the CLI and the forms."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Account:
    account_id: str
    username: str
    role: str
    county: str
    unit: str | None
    cadre: str | None
    must_change_password: bool

    def principal(self, token_id: str) -> access.Principal:
        return access.Principal(token_id, self.role, self.county, self.unit, self.cadre)


def hash_password(password: str, *, salt: str | None = None, n: int = SCRYPT["n"], r: int = SCRYPT["r"],
                  p: int = SCRYPT["p"]) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt.encode(), n=n, r=r, p=p, maxmem=64 * 1024 * 1024)
    return f"scrypt${n}${r}${p}${salt}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, _ = stored.split("$")
        if scheme != "scrypt":
            return False
        return hmac.compare_digest(hash_password(password, salt=salt, n=int(n), r=int(r), p=int(p)), stored)
    except (ValueError, TypeError):
        return False


_DUMMY = hash_password("not a password", salt="0" * 32)


def check_new_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError("password", f"at least {MIN_PASSWORD} characters")
    if password.strip() != password or username.lower() in password.lower():
        raise AccountError("password", "no leading or trailing spaces, and not containing the username")


def _account(row) -> Account:
    return Account(row.account_id, row.username, row.role, row.county, row.unit, row.cadre,
                   bool(row.must_change_password))


def add(engine: Engine, username: str, password: str, role: str, county: str, *, unit: str | None = None,
        cadre: str | None = None, clock: Clock = SYSTEM_CLOCK) -> Account:
    """A new account whose password must be changed at first login."""
    if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise AccountError("username", "1–64 letters, digits, '.', '-' or '_'")
    if role not in access.ROLES:
        raise AccountError("role", f"one of {', '.join(access.ROLES)}")
    if role == "cadre" and not (unit and cadre):
        raise AccountError("cadre", "a cadre account needs --unit and --cadre")
    check_new_password(password, username)
    hashed = hash_password(password)
    with write_transaction(engine) as conn:
        if conn.execute(select(accounts_table.c.account_id).where(accounts_table.c.username == username)).first():
            raise AccountError("username", f"{username!r} is taken")
        account_id = secrets.token_hex(6)
        conn.execute(accounts_table.insert().values(
            account_id=account_id, username=username, password_hash=hashed, role=role, county=county, unit=unit,
            cadre=cadre, disabled=False, must_change_password=True, failed_attempts=0,
            created_at=isoformat(clock.now())))
    return Account(account_id, username, role, county, unit, cadre, True)


def set_disabled(engine: Engine, username: str, disabled: bool = True) -> str:
    """Disable (or enable) an account; returns its id, for ending its sessions."""
    with write_transaction(engine) as conn:
        row = conn.execute(select(accounts_table).where(accounts_table.c.username == username)).first()
        if row is None:
            raise AccountError("username", f"no account {username!r}")
        conn.execute(update(accounts_table).where(accounts_table.c.account_id == row.account_id)
                     .values(disabled=disabled))
    return row.account_id


def reset(engine: Engine, username: str, password: str) -> str:
    """An administrator sets a temporary password: it must be changed at next login; the lock is lifted."""
    check_new_password(password, username)
    hashed = hash_password(password)
    with write_transaction(engine) as conn:
        result = conn.execute(update(accounts_table).where(accounts_table.c.username == username).values(
            password_hash=hashed, must_change_password=True, failed_attempts=0, locked_until=None))
        if result.rowcount != 1:
            raise AccountError("username", f"no account {username!r}")
        return conn.execute(select(accounts_table.c.account_id).where(accounts_table.c.username == username)).scalar()


def change_password(engine: Engine, account_id: str, current: str, new: str) -> None:
    with read_transaction(engine) as conn:
        row = conn.execute(select(accounts_table).where(accounts_table.c.account_id == account_id)).first()
    if row is None or not check_password(current, row.password_hash):
        raise AccountError("current", "the current password is not right")
    if new == current:
        raise AccountError("password", "choose a password different from the current one")
    check_new_password(new, row.username)
    hashed = hash_password(new)
    with write_transaction(engine) as conn:
        conn.execute(update(accounts_table).where(accounts_table.c.account_id == account_id)
                     .values(password_hash=hashed, must_change_password=False))


class LoginRefused(Exception):
    def __init__(self, reason: str, minutes: int = 0):
        super().__init__(reason)
        self.reason, self.minutes = reason, minutes     # reason: "wrong" | "locked"


def login(engine: Engine, username: str, password: str, clock: Clock = SYSTEM_CLOCK) -> Account:
    """The account, or LoginRefused. An unknown username costs the same hash as a known one; a
    disabled account answers like a wrong password (nobody learns which accounts exist)."""
    with read_transaction(engine) as conn:
        row = conn.execute(select(accounts_table).where(accounts_table.c.username == username)).first()
    now = clock.now()
    if row is not None and row.locked_until and parse_instant(row.locked_until) > now:
        left = parse_instant(row.locked_until) - now
        raise LoginRefused("locked", max(1, -(-int(left.total_seconds()) // 60)))
    ok = check_password(password, row.password_hash if row is not None else _DUMMY)
    if row is None or row.disabled:
        raise LoginRefused("wrong")
    with write_transaction(engine) as conn:
        if ok:
            if row.totp_secret is None:      # with a second factor, only the right code clears the count (totp.py)
                conn.execute(update(accounts_table).where(accounts_table.c.account_id == row.account_id)
                             .values(failed_attempts=0, locked_until=None))
            return _account(row)
        failures = conn.execute(select(accounts_table.c.failed_attempts)
                                .where(accounts_table.c.account_id == row.account_id)).scalar() + 1
        values = {"failed_attempts": failures}
        if failures >= MAX_FAILURES:
            values = {"failed_attempts": 0, "locked_until": isoformat(now + LOCKOUT)}
        conn.execute(update(accounts_table).where(accounts_table.c.account_id == row.account_id).values(**values))
    if failures >= MAX_FAILURES:
        raise LoginRefused("locked", int(LOCKOUT.total_seconds() // 60))
    raise LoginRefused("wrong")


def get(conn: Connection, account_id: str) -> Account | None:
    row = conn.execute(select(accounts_table).where(accounts_table.c.account_id == account_id,
                                                    accounts_table.c.disabled.is_(False))).first()
    return _account(row) if row is not None else None


def usable(engine: Engine, username: str, password: str) -> bool:
    """Does this enabled account exist and take this password? (For `minqing run`'s demo logins.)"""
    with read_transaction(engine) as conn:
        row = conn.execute(select(accounts_table).where(accounts_table.c.username == username)).first()
    return row is not None and not row.disabled and check_password(password, row.password_hash)


def ensure(engine: Engine, username: str, password: str, role: str, county: str, *, unit: str | None = None,
           cadre: str | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
    """Make `username` an enabled account with this password, role, county, unit and cadre, with no
    password change asked and no lock — for the demo logins of the embedded default only."""
    check_new_password(password, username)
    hashed = hash_password(password)
    values = dict(password_hash=hashed, role=role, county=county, unit=unit, cadre=cadre, disabled=False,
                  must_change_password=False, failed_attempts=0, locked_until=None)
    with write_transaction(engine) as conn:
        found = conn.execute(update(accounts_table).where(accounts_table.c.username == username).values(**values))
        if found.rowcount == 0:
            conn.execute(accounts_table.insert().values(account_id=secrets.token_hex(6), username=username,
                                                        created_at=isoformat(clock.now()), **values))
