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
    "policy.read": frozenset({"admin", "auditor"}),             # published policy versions and their diff
    "parked.manage": frozenset({"admin"}),                       # parked events of the county, and their retry
}

TOKEN_PREFIX = "mq_"
# Wrong PINs (see pin_attempt): one client on one number, one client on every number, every client on
# one number.
PIN_MAX_FAILURES = 5                       # per (tracking number, client) …
PIN_LOCKOUT = timedelta(minutes=15)        # … then that client is refused that number this long
PIN_CLIENT_MAX_FAILURES = 20               # per client, on any numbers, within …
PIN_CLIENT_WINDOW = timedelta(hours=1)     # … this window; then the client is refused tracking this long
PIN_NUMBER_FREE_FAILURES = 10              # per tracking number, from all clients, within …
PIN_NUMBER_WINDOW = timedelta(days=1)      # … this window; past it, one attempt on the number …
PIN_NUMBER_SLOWDOWN = timedelta(minutes=1)  # … per this interval (from anyone)

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

pin_failures_table = Table(      # wrong-PIN counters, see pin_attempt
    "access_pin_failures", metadata_obj,
    Column("counter", String(120), primary_key=True),  # "pair:<no>|<client>", "client:<client>" or "number:<no>"
    Column("failures", Integer, nullable=False),
    Column("since", String(32), nullable=False),       # when this counting window began
    Column("blocked_until", String(32), nullable=True),
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


GATEWAY_HEADER = "X-Minqing-Gateway"


def client_key(request, gateway_secret: str | None) -> str:
    """The client's address, for rate limits: the gateway's X-Forwarded-For when the request carries
    the gateway's proof (`X-Minqing-Gateway: <MINQING_GATEWAY_SECRET>`, a secret `minqing run` makes for
    each run), else the peer's address. Being a loopback peer proves nothing: any local client can
    reach a service port and write its own X-Forwarded-For."""
    peer = request.remote_addr or "unknown"
    forwarded = request.headers.get("X-Forwarded-For")
    proof = request.headers.get(GATEWAY_HEADER)
    if forwarded and gateway_secret and proof and hmac.compare_digest(proof.encode(), gateway_secret.encode()):
        return forwarded.split(",")[0].strip()
    return peer


def _client_ref(client: str) -> str:
    """A client's address as the counters keep it: hashed (an address is personal data)."""
    return hashlib.sha256(client.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _counter(conn: Connection, name: str, now, window: timedelta):
    """The counter row `name`, or None when it is absent or its window and block have passed."""
    row = conn.execute(select(pin_failures_table).where(pin_failures_table.c.counter == name)).first()
    if row is None:
        return None
    blocked = row.blocked_until is not None and parse_instant(row.blocked_until) > now
    if not blocked and parse_instant(row.since) + window <= now:
        conn.execute(pin_failures_table.delete().where(pin_failures_table.c.counter == name))
        return None
    return row


def _fail(conn: Connection, name: str, now) -> int:
    """Count one failure on `name` (atomically: the upsert locks the row until commit); the new count."""
    return increment(conn, pin_failures_table, {"counter": name}, "failures", since=isoformat(now))


def _block(conn: Connection, name: str, until) -> None:
    conn.execute(update(pin_failures_table).where(pin_failures_table.c.counter == name)
                 .values(blocked_until=isoformat(until)))


def pin_attempt(conn: Connection, tracking_no: str, client: str, pin_ok: bool,
                clock: Clock = SYSTEM_CLOCK) -> ApiError | None:
    """Record one PIN attempt on a tracking number from a client address; return the error to
    answer, or None when it may proceed. The caller commits before raising, so failures count.

    Tracking numbers are sequential, so a lockout per number alone lets anyone lock residents out
    (issue #12.6). Failures are therefore counted three ways, and what they refuse is aimed at the
    guesser, not the resident:

    - per (number, client): PIN_MAX_FAILURES wrong PINs refuse *that client* that number for
      PIN_LOCKOUT (429) — the resident, from any other address, is not affected;
    - per client: PIN_CLIENT_MAX_FAILURES wrong PINs on any numbers within PIN_CLIENT_WINDOW refuse
      that client all tracking for PIN_CLIENT_WINDOW (enumerating numbers is aimed at many residents);
    - per number, from all clients: past PIN_NUMBER_FREE_FAILURES wrong PINs within
      PIN_NUMBER_WINDOW, the number takes one attempt per PIN_NUMBER_SLOWDOWN (429 with a wait, the
      PIN not even compared) — so guessing one PIN from many addresses stays infeasible (a million
      PINs at one a minute: about a year on average), while the resident is slowed, never locked out.

    A refused attempt is not compared, so a refusal never tells whether the PIN was right."""
    now = clock.now()
    client_ref = _client_ref(client)
    pair, whole_client, number = f"pair:{tracking_no}|{client_ref}", f"client:{client_ref}", f"number:{tracking_no}"
    rows = {name: _counter(conn, name, now, window) for name, window in
            ((whole_client, PIN_CLIENT_WINDOW), (pair, PIN_LOCKOUT), (number, PIN_NUMBER_WINDOW))}
    for row in rows.values():
        if row is not None and row.blocked_until and parse_instant(row.blocked_until) > now:
            return _locked(parse_instant(row.blocked_until) - now)
    # Every attempt is counted first, atomically (the upsert locks the row until commit), so
    # concurrent guesses cannot all slip in under the limits; a right PIN is uncounted after.
    tries, client_tries = _fail(conn, pair, now), _fail(conn, whole_client, now)
    if tries > PIN_MAX_FAILURES or client_tries > PIN_CLIENT_MAX_FAILURES:
        return _locked(PIN_LOCKOUT if tries > PIN_MAX_FAILURES else PIN_CLIENT_WINDOW)
    if _fail(conn, number, now) > PIN_NUMBER_FREE_FAILURES:
        # Slowed down: this attempt must take the number's next slot (one conditional update, so
        # of concurrent attempts from many addresses exactly one gets it), whatever its outcome.
        taken = conn.execute(update(pin_failures_table).where(
            pin_failures_table.c.counter == number,
            (pin_failures_table.c.blocked_until.is_(None)) | (pin_failures_table.c.blocked_until <= isoformat(now)))
            .values(blocked_until=isoformat(now + PIN_NUMBER_SLOWDOWN))).rowcount
        if not taken:
            return _locked(PIN_NUMBER_SLOWDOWN)
    if pin_ok:
        conn.execute(pin_failures_table.delete().where(pin_failures_table.c.counter == pair))
        conn.execute(update(pin_failures_table).where(pin_failures_table.c.counter.in_([whole_client, number]))
                     .values(failures=pin_failures_table.c.failures - 1))
        return None
    if tries >= PIN_MAX_FAILURES:
        _block(conn, pair, now + PIN_LOCKOUT)
    if client_tries >= PIN_CLIENT_MAX_FAILURES:
        _block(conn, whole_client, now + PIN_CLIENT_WINDOW)
    return ApiError(404, "not_found", "no case matches this tracking number and PIN")


def _locked(wait: timedelta) -> ApiError:
    return ApiError(429, "locked", "too many wrong PINs; try again later",
                    {"pin": [f"try again in {max(1, int(wait.total_seconds()))} s"]})
