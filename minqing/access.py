"""Access control: who may see and do what. The one place that decides (issue #3).

Principals authenticate with a bearer token (`Authorization: Bearer mq_<id>.<secret>`), issued and
revoked with the CLI, stored only as a SHA-256 of the secret, with an expiry. Each token carries a
role, a county and, for cadres and supervisors, a unit. Residents do not hold tokens: they prove a
case is theirs with its tracking number and PIN (guarded here against guessing).

Rules, in one table (`POLICY`) plus the object-level checks below it:

- every action is allowed to a set of roles, only inside the token's own county;
- a cadre sees the cases their unit holds or has held, and acts only on what their unit holds now;
- a supervisor with a township unit sees the cases located in that township; without a unit, the county;
- an auditor reads everything in their county and changes nothing;
- what a principal may not see answers 404, exactly like what does not exist.
"""
from __future__ import annotations

import hashlib
import re
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import (BigInteger, Column, Connection, Engine, Integer, MetaData, String, Table, select, update)

from minqing.clock import SYSTEM_CLOCK, Clock, isoformat, parse_instant
from minqing.db import increment, write_transaction
from minqing.http import ApiError

ROLES = ("operator", "cadre", "supervisor", "auditor", "integrator", "admin")

# action → roles allowed (always within the token's own county). "public" actions need no token.
POLICY: dict[str, frozenset[str]] = {
    "public": frozenset(),
    "case.report": frozenset({"operator", "cadre"}),
    "case.read": frozenset({"operator", "cadre", "supervisor", "auditor"}),
    "case.resolve": frozenset({"cadre"}),
    "case.accept": frozenset({"cadre"}),
    "case.note": frozenset({"cadre"}),
    "case.escalate": frozenset({"cadre"}),
    "case.joint": frozenset({"cadre"}),
    "case.return": frozenset({"cadre"}),
    "case.transfer": frozenset({"cadre", "supervisor"}),
    "case.supervise": frozenset({"supervisor"}),
    "worklist.read": frozenset({"operator", "cadre", "supervisor"}),
    "assessment.read": frozenset({"cadre", "supervisor", "auditor"}),
    "notifications.read": frozenset({"auditor", "admin"}),
    "access_log.read": frozenset({"auditor"}),
    "events.read": frozenset({"integrator"}),
    "case.follow_up": frozenset({"operator"}),                   # enter a 回访 rating after a call
    "follow_up.read": frozenset({"operator", "supervisor"}),     # the 回访 queue (supervisors: their townships)
    "subscriptions.manage": frozenset({"integrator", "admin"}),
    "visit.log": frozenset({"cadre"}),                             # a cadre's own field visits
    "open311.submit": frozenset({"operator", "integrator"}),    # an Open311 api_key
}

TOKEN_PREFIX = "mq_"
PIN_MAX_FAILURES = 5
PIN_LOCKOUT = timedelta(minutes=15)

metadata_obj = MetaData()

tokens_table = Table(
    "access_tokens", metadata_obj,
    Column("token_id", String(16), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("role", String(20), nullable=False),
    Column("county", String(40), nullable=False),
    Column("unit", String(100), nullable=True),
    Column("cadre", String(100), nullable=True),
    Column("label", String(200), nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
    Column("revoked_at", String(32), nullable=True),
)

access_log_table = Table(
    "access_log", metadata_obj,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("county", String(40), nullable=False, index=True),
    Column("case_id", String(36), nullable=False, index=True),
    Column("token_id", String(16), nullable=False),
    Column("role", String(20), nullable=False),
    Column("actor", String(120), nullable=False),
    Column("action", String(40), nullable=False),
)

pin_attempts_table = Table(
    "access_pin_attempts", metadata_obj,
    Column("tracking_no", String(40), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locked_until", String(32), nullable=True),
)


@dataclass(frozen=True)
class Principal:
    token_id: str
    role: str
    county: str
    unit: str | None = None
    cadre: str | None = None

    @property
    def actor(self) -> str:
        return f"cadre:{self.cadre}" if self.cadre else f"{self.role}:{self.token_id}"


# ---- tokens ----------------------------------------------------------------------------------------

def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(engine: Engine, role: str, county: str, *, unit: str | None = None, cadre: str | None = None,
                label: str | None = None, days: int = 90, clock: Clock = SYSTEM_CLOCK) -> tuple[str, str]:
    """Create a token; return (token id, the token) — the token is shown once and never stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "cadre" and not (cadre and unit):
        raise ValueError("a cadre token needs --cadre and --unit")
    if not 1 <= days <= 3650:
        raise ValueError("days must be between 1 and 3650")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = clock.now()
    with write_transaction(engine) as conn:
        conn.execute(tokens_table.insert().values(
            token_id=token_id, secret_hash=_hash_secret(secret), role=role, county=county, unit=unit, cadre=cadre,
            label=label, created_at=isoformat(now), expires_at=isoformat(now + timedelta(days=days))))
    return token_id, f"{TOKEN_PREFIX}{token_id}.{secret}"


def revoke_token(engine: Engine, token_id: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    with write_transaction(engine) as conn:
        result = conn.execute(update(tokens_table).where(tokens_table.c.token_id == token_id,
                                                         tokens_table.c.revoked_at.is_(None))
                              .values(revoked_at=isoformat(clock.now())))
    return result.rowcount == 1


def list_tokens(conn: Connection, county: str | None = None) -> list[dict]:
    query = select(tokens_table).order_by(tokens_table.c.created_at)
    if county:
        query = query.where(tokens_table.c.county == county)
    return [{k: v for k, v in dict(r).items() if k != "secret_hash"} for r in conn.execute(query).mappings()]


_TOKEN_ID = re.compile(r"[0-9a-f]{12}")
_UNAUTHENTICATED = ApiError(401, "unauthenticated", "a valid bearer token is required")


def authenticate(conn: Connection, authorization: str | None, clock: Clock = SYSTEM_CLOCK) -> Principal:
    """The principal behind an `Authorization: Bearer …` header, or ApiError 401 (never saying why)."""
    if not authorization or authorization[:7].lower() != "bearer ":
        raise _UNAUTHENTICATED
    token = authorization[7:].strip()
    if not token.startswith(TOKEN_PREFIX) or "." not in token:
        raise _UNAUTHENTICATED
    token_id, _, secret = token[len(TOKEN_PREFIX):].partition(".")
    if not _TOKEN_ID.fullmatch(token_id) or not secret.isascii() or "\x00" in secret:
        raise _UNAUTHENTICATED
    row = conn.execute(select(tokens_table).where(tokens_table.c.token_id == token_id)).first()
    if row is None or not hmac.compare_digest(row.secret_hash, _hash_secret(secret)):
        raise _UNAUTHENTICATED
    if row.revoked_at is not None or parse_instant(row.expires_at) <= clock.now():
        raise _UNAUTHENTICATED
    return Principal(row.token_id, row.role, row.county, row.unit, row.cadre)


# ---- decisions -------------------------------------------------------------------------------------

def authorize(principal: Principal, action: str, county: str | None = None) -> None:
    """Role-level check: may this principal perform `action` in `county` at all?"""
    allowed = POLICY.get(action)
    if allowed is None:
        raise ApiError(500, "internal_error", f"no access rule for action {action!r}")
    if principal.role not in allowed:
        raise ApiError(403, "forbidden", f"the {principal.role} role may not do this")
    if county is not None and county != principal.county:
        raise ApiError(403, "forbidden", "this token is for another county")


def township_scope(principal: Principal, policy) -> set[str] | None:
    """Townships a supervisor oversees; None means the whole county."""
    if principal.unit is None:
        return None
    unit = policy.unit(principal.unit) if policy else None
    if unit is None:
        return set()
    if "county" in unit["covers"]:
        return None
    townships = set()
    for code in unit["covers"]:
        townships.add(code.split(".")[0])
    return townships


def can_read_case(principal: Principal, case, policy) -> bool:
    """Object-level: may this principal see this case? (The role check has passed already.)"""
    if case.county != principal.county:
        return False
    if principal.role in ("operator", "auditor"):
        return True
    if principal.role == "cadre":
        return principal.unit is not None and principal.unit in case.units_seen
    if principal.role == "supervisor":
        scope = township_scope(principal, policy)
        return scope is None or (case.location or {}).get("township") in scope
    return False


def can_act_on_case(principal: Principal, case) -> bool:
    """Object-level: a cadre acts only on a case their unit holds now."""
    return (principal.role == "cadre" and case.county == principal.county and principal.unit is not None
            and case.unit == principal.unit)


def not_found() -> ApiError:
    return ApiError(404, "not_found", "no case with this id", {"case_id": ["unknown"]})


# ---- access record ---------------------------------------------------------------------------------

def record_access(conn: Connection, principal: Principal, county: str, case_id: str, action: str,
                  clock: Clock = SYSTEM_CLOCK) -> None:
    conn.execute(access_log_table.insert().values(
        at=isoformat(clock.now()), county=county, case_id=case_id, token_id=principal.token_id,
        role=principal.role, actor=principal.actor, action=action))


def list_access(conn: Connection, county: str, case_id: str | None = None, limit: int = 500) -> list[dict]:
    query = select(access_log_table).where(access_log_table.c.county == county)
    if case_id:
        query = query.where(access_log_table.c.case_id == case_id)
    rows = conn.execute(query.order_by(access_log_table.c.id.desc()).limit(limit)).mappings()
    return [{k: r[k] for k in ("at", "case_id", "token_id", "role", "actor", "action")} for r in rows]


# ---- abuse resistance ------------------------------------------------------------------------------

class RateLimiter:
    """Token buckets per key (a client address or a token), in this process."""

    def __init__(self, rate_per_second: float, burst: int):
        self.rate, self.burst = rate_per_second, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            return True


def too_many() -> ApiError:
    return ApiError(429, "rate_limited", "too many requests; slow down and try again shortly")


def client_key(request) -> str:
    """The client's address. Behind the gateway (a loopback peer) we trust its X-Forwarded-For."""
    peer = request.remote_addr or "unknown"
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and peer.startswith("127."):
        return forwarded.split(",")[0].strip()
    return peer


def pin_attempt(conn: Connection, tracking_no: str, pin_ok: bool, clock: Clock = SYSTEM_CLOCK) -> ApiError | None:
    """Record one PIN attempt on a tracking number; return the error to answer, or None when it may
    proceed. After PIN_MAX_FAILURES wrong PINs the number is locked for PIN_LOCKOUT (429), whatever
    PIN comes next. The caller commits before raising, so failures are counted even though refused."""
    now = clock.now()
    locked = ApiError(429, "locked", "too many wrong PINs for this tracking number; try again later")
    where = pin_attempts_table.c.tracking_no == tracking_no
    row = conn.execute(select(pin_attempts_table).where(where)).first()
    if row is not None and row.locked_until:
        if parse_instant(row.locked_until) > now:
            return locked
        conn.execute(pin_attempts_table.delete().where(where))      # an expired lock: count afresh
    # Every attempt is counted first, atomically (the upsert locks the row until commit), so
    # concurrent guesses cannot all slip in under the limit; a right PIN counts only within it.
    attempts = increment(conn, pin_attempts_table, {"tracking_no": tracking_no}, "failures")
    if attempts > PIN_MAX_FAILURES:
        conn.execute(update(pin_attempts_table).where(where, pin_attempts_table.c.locked_until.is_(None))
                     .values(locked_until=isoformat(now + PIN_LOCKOUT)))
        return locked
    if pin_ok:
        conn.execute(pin_attempts_table.delete().where(where))
        return None
    if attempts >= PIN_MAX_FAILURES:
        conn.execute(update(pin_attempts_table).where(where).values(locked_until=isoformat(now + PIN_LOCKOUT)))
    return ApiError(404, "not_found", "no case matches this tracking number and PIN")

