"""Webhook subscriptions for other systems (issue #6 §5).

A subscription is a URL, a county and an event-type filter (`case.resolved`, or `case.*`). Deliveries
are CloudEvents 1.0 in structured mode (`application/cloudevents+json`), one event per POST, signed:
`X-Minqing-Signature: sha256=<hex HMAC-SHA256 of the body under the subscription's secret>`; the
secret is shown once at registration and kept sealed in the vault.

Each subscription has its own cursor: the ledger position of the last event delivered (or skipped as
not matching). Events go out in ledger order, so one case's events arrive in order; an event is
retried with exponential backoff (capped at five minutes) until the subscriber answers 2xx, and
nothing after it is sent meanwhile. A subscriber down for a day resumes from its cursor: nothing is
lost, nothing skipped. Delivery is at least once (a crash between the 2xx and the cursor update sends
that event again): subscribers drop repeats by the CloudEvent `id`. Events carry masked personal data
only, and never the resident's vault reference (minqing/cloudevents.py).
"""
from __future__ import annotations

import fnmatch
import json
import logging
import secrets
import uuid
from datetime import timedelta

import requests
from sqlalchemy import Connection, select, update

from minqing import cloudevents, contract, signing
from minqing.clock import Clock, isoformat
from minqing.db import read_transaction, write_transaction
from minqing.ledger import Ledger
from minqing.localtime import local_iso, zone_of
from minqing.netpolicy import TargetRefused, check_target
from minqing.vault import Vault
from services.notify.channels import post
from services.notify.rules import policy_for
from services.notify.tables import subscriptions_table

log = logging.getLogger("minqing.notify.subscriptions")
LEASE = timedelta(minutes=1)
MAX_BACKOFF = timedelta(minutes=5)
BATCH = 200


class SubscriptionError(ValueError):
    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))


def matching_types(patterns: list[str]) -> list[str]:
    """The catalogue's event types a filter admits; raises SubscriptionError for a pattern that admits none."""
    admitted: list[str] = []
    for i, pattern in enumerate(patterns):
        found = [name for name in contract.CATALOGUE if fnmatch.fnmatchcase(name, pattern)]
        if not found:
            raise SubscriptionError({f"types.{i}": [f"{pattern!r} matches no event type (e.g. case.resolved, case.*)"]})
        admitted += [t for t in found if t not in admitted]
    return admitted


def register(conn: Connection, ledger: Ledger, vault: Vault, clock: Clock, *, county: str, url: str, types: list[str],
             description: str | None, created_by: str, from_start: bool = False) -> tuple[dict, str]:
    """Add a subscription; deliveries start with the next event recorded (or from the first, with
    `from_start`). Returns (the subscription, its secret — shown once)."""
    policy = policy_for(conn, county)
    allow_private = bool(policy and policy.notify["allow_private_webhooks"])
    try:
        check_target(url, allow_private=allow_private)
    except TargetRefused as exc:
        raise SubscriptionError({"url": [str(exc)]}) from None
    matching_types(types)
    secret = secrets.token_urlsafe(32)
    now = isoformat(clock.now())
    row = {"id": str(uuid.uuid4()), "county": county, "url": url, "types": json.dumps(types),
           "secret": vault.seal(secret.encode()), "description": description, "status": "active",
           "position": 0 if from_start else ledger.head(conn=conn)[0], "delivered": 0, "failures": 0,
           "next_attempt_at": now, "lease_until": None, "last_error": None, "created_at": now,
           "created_by": created_by}
    conn.execute(subscriptions_table.insert().values(**row))
    return public(row, zone_of(policy.doc if policy else None)), secret


def public(row, zone: str | None = None) -> dict:
    """The subscription as an integrator sees it: times in the county's zone (`zone`, issue #18.1)."""
    r = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    return {"id": r["id"], "county": r["county"], "url": r["url"], "types": json.loads(r["types"]),
            "description": r["description"], "status": r["status"], "position": r["position"],
            "delivered": r["delivered"], "failures": r["failures"],
            "next_attempt_at": local_iso(r["next_attempt_at"], zone),
            "last_error": r["last_error"], "created_at": local_iso(r["created_at"], zone)}


def _zone(conn: Connection, county: str) -> str:
    policy = policy_for(conn, county)
    return zone_of(policy.doc if policy else None)


def list_for(conn: Connection, county: str) -> list[dict]:
    rows = conn.execute(select(subscriptions_table).where(subscriptions_table.c.county == county,
                                                          subscriptions_table.c.status == "active")
                        .order_by(subscriptions_table.c.created_at, subscriptions_table.c.id)).all()
    zone = _zone(conn, county)
    return [public(r, zone) for r in rows]


def get(conn: Connection, county: str, sub_id: str) -> dict | None:
    row = conn.execute(select(subscriptions_table).where(subscriptions_table.c.id == sub_id,
                                                         subscriptions_table.c.county == county,
                                                         subscriptions_table.c.status == "active")).first()
    return public(row, _zone(conn, county)) if row else None


def remove(conn: Connection, county: str, sub_id: str) -> bool:
    done = conn.execute(update(subscriptions_table).where(subscriptions_table.c.id == sub_id,
                                                          subscriptions_table.c.county == county,
                                                          subscriptions_table.c.status == "active")
                        .values(status="removed"))
    return done.rowcount == 1


def _claim(ledger: Ledger, clock: Clock) -> list:
    now = clock.now()
    with write_transaction(ledger.engine) as conn:
        query = select(subscriptions_table.c.id).where(
            subscriptions_table.c.status == "active", subscriptions_table.c.next_attempt_at <= isoformat(now),
            (subscriptions_table.c.lease_until.is_(None)) | (subscriptions_table.c.lease_until <= isoformat(now)))
        if ledger.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = [r.id for r in conn.execute(query)]
        if not ids:
            return []
        conn.execute(update(subscriptions_table).where(subscriptions_table.c.id.in_(ids))
                     .values(lease_until=isoformat(now + LEASE)))
        return conn.execute(select(subscriptions_table).where(subscriptions_table.c.id.in_(ids))).all()


def deliver_round(ledger: Ledger, vault: Vault, clock: Clock, *, timeout: float = 10.0,
                  session: requests.Session | None = None, budget: int = BATCH) -> int:
    """One pass over every due subscription: send what is pending, in order, until one fails."""
    sent = 0
    for sub in _claim(ledger, clock):
        try:
            sent += _deliver_one(ledger, vault, clock, sub, timeout, session, budget)
        except Exception as exc:      # one broken subscription must not stop the others
            log.exception("subscription %s: delivery failed", sub.id)
            _save(ledger, sub.id, sub.position, 0, sub.failures + 1,
                  isoformat(clock.now() + MAX_BACKOFF), f"{type(exc).__name__}: delivery failed")
    return sent


def _deliver_one(ledger: Ledger, vault: Vault, clock: Clock, sub, timeout: float, session, budget: int) -> int:
    types = matching_types(json.loads(sub.types))
    secret = vault.unseal(sub.secret)
    with read_transaction(ledger.engine) as conn:
        policy = policy_for(conn, sub.county)
    allow_private = bool(policy and policy.notify["allow_private_webhooks"])
    position, sent, failures = sub.position, 0, sub.failures
    for event in ledger.read_all(position, budget, types=types):
        if event.county == sub.county:
            body = json.dumps(cloudevents.to_cloudevent(event), ensure_ascii=False).encode()
            headers = {"Content-Type": cloudevents.CONTENT_TYPE, signing.HEADER: signing.sign(secret, body),
                       "X-Minqing-Subscription": sub.id}
            error = None
            try:
                resp = post(sub.url, body, headers, timeout=timeout, allow_private=allow_private, session=session)
                if not 200 <= resp.status_code < 300:
                    error = f"the subscriber answered {resp.status_code}"
            except TargetRefused as exc:
                error = f"refused: {exc}"
            except requests.RequestException as exc:
                error = f"unreachable: {type(exc).__name__}"
            if error is not None:
                failures += 1
                wait = min(timedelta(seconds=2 ** min(failures - 1, 16)), MAX_BACKOFF)
                _save(ledger, sub.id, position, 0, failures, isoformat(clock.now() + wait), error)
                log.warning("subscription %s: event %d not delivered (%s); next try in %ss", sub.id,
                            event.position, error, int(wait.total_seconds()))
                return sent
            sent += 1
            failures = 0
            _save(ledger, sub.id, event.position, 1, 0, isoformat(clock.now()), None,
                  renew_lease=isoformat(clock.now() + LEASE))
        position = event.position
    _save(ledger, sub.id, position, 0, failures, isoformat(clock.now()), None)
    return sent


def _save(ledger: Ledger, sub_id: str, position: int, delivered: int, failures: int, next_attempt_at: str,
          error: str | None, renew_lease: str | None = None) -> None:
    """Save progress; the lease is renewed after each delivered event (a long catch-up keeps it) or released."""
    values = dict(position=position, delivered=subscriptions_table.c.delivered + delivered, failures=failures,
                  next_attempt_at=next_attempt_at, last_error=error, lease_until=renew_lease)
    with write_transaction(ledger.engine) as conn:
        conn.execute(update(subscriptions_table).where(subscriptions_table.c.id == sub_id).values(**values))
