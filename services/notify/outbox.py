"""The delivery outbox: rules (services/notify/rules.py) put rows here inside the projection's
transaction; the sender takes due rows, delivers them and records each outcome on the ledger.

At most once per key (issue #6 §3):
- a row is *claimed* under a lease, so two notify instances never take the same row;
- just before the channel is called the row is marked *sending* in its own transaction;
- after the channel took it, the row is marked *sent* and `notification.sent` appended, together.
The lease is MINQING_NOTIFY_LEASE_SECONDS (two minutes by default; longer than any channel's timeout).
A claimed row whose lease lapsed was never handed to a channel and goes back to pending. A *sending*
row whose lease lapsed may or may not have reached the channel (the sender died in between): it is
never sent again on its own but failed as "interrupted" and listed for operators, who decide
(`minqing notify retry KEY`). The key also travels to the channel as an idempotency key.

Failures are retried with exponential backoff (MINQING_NOTIFY_BACKOFF_SECONDS, doubling); after
MINQING_NOTIFY_MAX_ATTEMPTS the row is failed and `notification.failed` appended.

A resident's messages about one case leave in the order of their events (services/notify/ordering.py):
a later one waits, pending, behind an earlier one still unsent. The receipt's PIN is filled in from
the vault at this last moment (minqing/pins.py), for the real channel only.
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import timedelta

from sqlalchemy import Connection, select, update

from minqing.casefile import fold
from minqing.clock import Clock, isoformat
from minqing.db import read_transaction, write_transaction
from minqing.ledger import ANY, Ledger, Metadata, NewEvent
from minqing.localtime import local_iso, zone_of
from minqing.personal_data import mask_free_text
from minqing.pins import PIN_SLOT, fill_pin, unseal_pin
from minqing.vault import Vault
from services.notify import ordering, templates
from services.notify.channels import Channel, Message
from services.notify.quiet import defer_for_quiet
from services.notify.rules import policy_for
from services.notify.tables import contacts_table, outbox_table

log = logging.getLogger("minqing.notify")
ACTOR = "service:notify"
LEASE = timedelta(minutes=2)
_NS = uuid.UUID("0c7d8a1e-5b1f-4c55-8d2e-2f9b7e5a4c31")


def _stream(row) -> str:
    return f"case-{row.case_id}" if row.case_id else f"notify-{row.county}"


_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def public_key(key: str) -> str:
    """What leaves notify for a key: its hash. The key holds the resident's vault reference, which would
    let a subscriber link every report of one person (principle 8)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return "n-" + digest.translate(_LETTERS)        # letters only: a run of digits would read as a phone number


def _still_deliverable(conn: Connection, ledger: Ledger, row) -> bool:
    """A result is delivered only while its resolution stands: resolved, by the event that caused it."""
    history = ledger.read_stream(f"case-{row.case_id}", conn=conn)
    resolved = [e for e in history if e.type == "case.resolved"]
    return fold(row.case_id, history).status == "resolved" and bool(resolved) and resolved[-1].event_id == row.caused_by


def _record(conn: Connection, ledger: Ledger, row, event_type: str, attempts: int, channel: str,
            error: str | None = None) -> None:
    data = {"key": public_key(row.key), "case_id": row.case_id, "channel": channel, "template": row.template,
            "recipient_role": row.recipient_role, "recipient_masked": row.recipient_masked,
            "caused_by": row.caused_by, "attempts": attempts}
    if error is not None:
        data["error"] = error
    events = [NewEvent(event_type, data, Metadata(actor=ACTOR, county=row.county, correlation_id=row.case_id,
                                                  causation_id=row.caused_by),
                       event_id=str(uuid.uuid5(_NS, f"{event_type}:{row.key}:{row.retries}")))]
    if event_type == "notification.sent" and row.template == "result" and row.case_id \
            and _still_deliverable(conn, ledger, row):
        # 统一送达: the result reached the resident's channel — the case is delivered
        events.append(NewEvent("case.delivered", {"case_id": row.case_id, "channel": channel},
                               Metadata(actor=ACTOR, county=row.county, correlation_id=row.case_id,
                                        causation_id=row.caused_by),
                               event_id=str(uuid.uuid5(_NS, f"case.delivered:{row.key}:{row.retries}"))))
    ledger.append(_stream(row), events, ANY, conn=conn)


class StaleResult(Exception):
    pass


def recover_expired(ledger: Ledger, clock: Clock) -> int:
    """Lapsed leases: claimed rows back to pending; interrupted sends failed for an operator to decide."""
    now = isoformat(clock.now())
    with write_transaction(ledger.engine) as conn:
        conn.execute(update(outbox_table).where(outbox_table.c.status == "claimed",
                                                outbox_table.c.next_attempt_at <= now).values(status="pending"))
        lost = conn.execute(select(outbox_table).where(outbox_table.c.status == "sending",
                                                       outbox_table.c.next_attempt_at <= now)).all()
        for row in lost:
            error = "interrupted while sending: delivery unknown, not repeated (retry it if it did not arrive)"
            conn.execute(update(outbox_table).where(outbox_table.c.key == row.key)
                         .values(status="failed", last_error=error))
            _record(conn, ledger, row, "notification.failed", max(row.attempts, 1), row.channel_used or row.channel, error)
    return len(lost)


def claim_due(ledger: Ledger, clock: Clock, limit: int, lease: timedelta = LEASE, owner: str | None = None) -> list:
    """Take up to `limit` due rows under a lease held by `owner` (a sender round)."""
    now = clock.now()
    due = (select(outbox_table.c.key).where(outbox_table.c.status == "pending",
                                            outbox_table.c.next_attempt_at <= isoformat(now))
           .order_by(outbox_table.c.next_attempt_at, outbox_table.c.key).limit(limit))
    if ledger.engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    with write_transaction(ledger.engine) as conn:
        keys = [r.key for r in conn.execute(due)]
        if not keys:
            return []
        conn.execute(update(outbox_table).where(outbox_table.c.key.in_(keys), outbox_table.c.status == "pending")
                     .values(status="claimed", claimed_by=owner, next_attempt_at=isoformat(now + lease)))
        return conn.execute(select(outbox_table).where(outbox_table.c.key.in_(keys))
                            .order_by(outbox_table.c.next_attempt_at, outbox_table.c.key)).all()


def _address(conn: Connection, vault: Vault, row) -> tuple[str, str | None]:
    """(channel, address) for the row's recipient, read from the vault just before sending."""
    kind, _, ref = row.recipient_ref.partition(":")
    if kind == "resident":
        fields = vault.reveal(conn, ref)
        if fields is None:
            raise LookupError("the resident's contact details were erased")
        return "sms", fields.get("phone")
    contact = conn.execute(select(contacts_table).where(contacts_table.c.county == row.county,
                                                        contacts_table.c.recipient == row.recipient_ref)).first()
    if contact is None or contact.channel == "log":
        return "log", None
    fields = vault.reveal(conn, contact.subject) or {}
    return contact.channel, fields.get({"sms": "phone", "email": "email", "webhook": "webhook"}[contact.channel])


def deliver_due(ledger: Ledger, vault: Vault, channels: dict[str, Channel], clock: Clock, *, limit: int = 50,
                max_attempts: int = 5, backoff_seconds: float = 2.0, lease: timedelta = LEASE) -> int:
    recover_expired(ledger, clock)
    delivered = 0
    owner = str(uuid.uuid4())
    for row in claim_due(ledger, clock, limit, lease, owner):
        if row.quiet:       # quiet hours are checked again when sending: a late catch-up or a retry at night waits
            with read_transaction(ledger.engine) as conn:
                policy = policy_for(conn, row.county)
            later = defer_for_quiet(clock.now(), policy.notify["quiet_hours"], policy.doc["timezone"]) if policy else None
            if later is not None and later > clock.now():
                with write_transaction(ledger.engine) as conn:
                    conn.execute(update(outbox_table).where(outbox_table.c.key == row.key,
                                                            outbox_table.c.claimed_by == owner)
                                 .values(status="pending", next_attempt_at=isoformat(later)))
                continue
        with write_transaction(ledger.engine) as conn:
            earlier = ordering.earlier_unsent(conn, ledger, row)
            if earlier:
                released = not row.quiet and ordering.release_held(conn, earlier, clock.now())
                # urgent: the earlier ones held for the morning go now, first, and this one right after
                retry_at = isoformat(clock.now()) if released else ordering.wait_until(earlier, clock.now())
                conn.execute(update(outbox_table).where(outbox_table.c.key == row.key, outbox_table.c.status == "claimed",
                                                        outbox_table.c.claimed_by == owner)
                             .values(status="pending", next_attempt_at=retry_at))
                continue
        attempts = row.attempts + 1
        channel_name = row.channel
        with write_transaction(ledger.engine) as conn:
            # still ours: a row whose claim lapsed while earlier rows were sent may have been taken by another
            marked = conn.execute(update(outbox_table).where(outbox_table.c.key == row.key,
                                                             outbox_table.c.status == "claimed",
                                                             outbox_table.c.claimed_by == owner)
                                  .values(status="sending", attempts=attempts,
                                          next_attempt_at=isoformat(clock.now() + lease)))
        if marked.rowcount != 1:
            continue
        pin = None
        try:
            with read_transaction(ledger.engine) as conn:
                channel_name, address = _address(conn, vault, row)
            if channel_name not in channels:
                channel_name, address = "log", None        # not configured here: the log says what would go
            if row.template == "result" and row.case_id:
                with read_transaction(ledger.engine) as conn:
                    if not _still_deliverable(conn, ledger, row):
                        raise StaleResult("the case was reopened or rated since this result: not sent")
            body = row.body
            if PIN_SLOT in body:
                with read_transaction(ledger.engine) as conn:
                    pin = unseal_pin(conn, vault, row.recipient_ref.partition(":")[2], row.case_id)
                body = fill_pin(body, pin, shown=channel_name != "log")
            channels[channel_name].send(Message(key=public_key(row.key), address=address, recipient_masked=row.recipient_masked,
                                                title=templates.title(row.template, _language(ledger, row.county)),
                                                body=body))
        except Exception as exc:
            error = mask_free_text(f"{type(exc).__name__}: {exc}")[:1000]     # a gateway may echo the address
            if pin:
                error = error.replace(pin, "******")                          # or the message it was given
            _failed_attempt(ledger, row, owner, attempts, channel_name, error, clock, max_attempts, backoff_seconds)
            continue
        with write_transaction(ledger.engine) as conn:
            done = conn.execute(update(outbox_table).where(outbox_table.c.key == row.key,
                                                           outbox_table.c.status == "sending",
                                                           outbox_table.c.claimed_by == owner)
                                .values(status="sent", sent_at=isoformat(clock.now()), channel_used=channel_name))
            if done.rowcount == 1:
                _record(conn, ledger, row, "notification.sent", attempts, channel_name)
                delivered += 1
    return delivered


def _language(ledger: Ledger, county: str) -> str:
    with read_transaction(ledger.engine) as conn:
        policy = policy_for(conn, county)
    return policy.notify["language"] if policy else "zh"


def _failed_attempt(ledger: Ledger, row, owner: str, attempts: int, channel: str, error: str, clock: Clock,
                    max_attempts: int, backoff_seconds: float) -> None:
    mine = update(outbox_table).where(outbox_table.c.key == row.key, outbox_table.c.status == "sending",
                                      outbox_table.c.claimed_by == owner)
    with write_transaction(ledger.engine) as conn:
        if attempts >= max_attempts:
            if conn.execute(mine.values(status="failed", last_error=error, channel_used=channel)).rowcount == 1:
                _record(conn, ledger, row, "notification.failed", attempts, channel, error)
        else:
            retry_at = clock.now() + timedelta(seconds=backoff_seconds * 2 ** (attempts - 1))
            if row.quiet:
                policy = policy_for(conn, row.county)
                if policy is not None:
                    retry_at = defer_for_quiet(retry_at, policy.notify["quiet_hours"], policy.doc["timezone"])
            conn.execute(mine.values(status="pending", next_attempt_at=isoformat(retry_at), last_error=error))
    log.warning("notification %s attempt %d failed: %s", row.key, attempts, error)


def retry(ledger: Ledger, clock: Clock, county: str, key: str | None = None) -> list[str]:
    """Put failed notifications of `county` (one `key`, or all) back in line for a fresh set of attempts."""
    with write_transaction(ledger.engine) as conn:
        query = select(outbox_table.c.key).where(outbox_table.c.county == county, outbox_table.c.status == "failed")
        if key is not None:
            query = query.where(outbox_table.c.key == key)
        keys = [r.key for r in conn.execute(query)]
        if keys:
            conn.execute(update(outbox_table).where(outbox_table.c.key.in_(keys))
                         .values(status="pending", attempts=0, retries=outbox_table.c.retries + 1,
                                 next_attempt_at=isoformat(clock.now()), last_error=None))
    return keys


def list_outbox(conn: Connection, county: str, status: str | None = None, limit: int = 100) -> list[dict]:
    query = (select(outbox_table).where(outbox_table.c.county == county)
             .order_by(outbox_table.c.next_attempt_at.desc(), outbox_table.c.key).limit(limit))
    if status:
        query = query.where(outbox_table.c.status == status)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    policy = policy_for(conn, county)
    zone = zone_of(policy.doc if policy else None)
    for row in rows:
        row.pop("recipient_ref", None)
        row.pop("quiet", None)
        for name in ("next_attempt_at", "sent_at"):        # shown to people: the county's time (#18.1a)
            row[name] = local_iso(row[name], zone)
    return rows
