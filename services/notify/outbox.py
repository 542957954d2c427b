"""The delivery outbox: rules decide *what* to send inside the projection transaction; the sender
delivers pending rows and records each delivery as `notification.sent` (or, after the configured
attempts, `notification.failed`) in the same transaction that marks the row.

A crash after a channel accepted a message but before the row was marked re-sends that message on
restart: delivery to an outside channel is at-least-once, and the outbox key is passed to the
channel as an idempotency key so gateways that honour one deliver it once.
"""
from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import Connection, select, update

from minqing.casefile import fold
from minqing.clock import Clock, isoformat
from minqing.db import read_transaction, write_transaction
from minqing.ledger import ANY, Ledger, Metadata, NewEvent, RecordedEvent
from minqing.personal_data import mask_free_text
from minqing.vault import Vault
from services.notify.channels import Channel
from services.notify.tables import outbox_table

log = logging.getLogger("minqing.notify")
ACTOR = "service:notify"
MAX_ATTEMPTS = 5
_NS = uuid.UUID("0c7d8a1e-5b1f-4c55-8d2e-2f9b7e5a4c31")


def enqueue(conn: Connection, event: RecordedEvent, *, template: str, recipient_role: str, recipient_ref: str,
            recipient_masked: str, body: str, channel: str, now: str) -> None:
    key = f"{event.event_id}:{template}:{recipient_role}"
    if conn.execute(select(outbox_table.c.key).where(outbox_table.c.key == key)).first() is not None:
        return
    conn.execute(outbox_table.insert().values(
        key=key, case_id=event.data.get("case_id"), county=event.county, channel=channel, template=template,
        recipient_role=recipient_role, recipient_ref=recipient_ref, recipient_masked=recipient_masked, body=body,
        caused_by=event.event_id, status="pending", attempts=0, next_attempt_at=now))


class NotificationRules:
    """Which events notify whom (the walking skeleton: the receipt and the assignment)."""
    name = "notify.rules"
    event_types = frozenset({"case.reported", "case.assigned"})

    def __init__(self, ledger: Ledger, config=None):
        self.ledger = ledger

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        d = event.data
        if event.type == "case.reported":
            enqueue(conn, event, template="receipt", recipient_role="resident",
                    recipient_ref=d["reporter"]["subject"], recipient_masked=d["reporter"]["phone_masked"],
                    body=(f"您反映的诉求已受理，受理编号 {d['tracking_no']}。"
                          f"可凭受理编号和查询码查询办理进度。"),
                    channel="log", now=event.recorded_at)
        elif event.type == "case.assigned":
            case = fold(d["case_id"], self.ledger.read_stream(event.stream, conn=conn))
            enqueue(conn, event, template="assignment", recipient_role="cadre", recipient_ref=d["cadre"],
                    recipient_masked=d["cadre"],
                    body=(f"新派单 {case.tracking_no}（类别 {case.category}）：请于 {d['response_due']} 前受理，"
                          f"{d['resolution_due']} 前办结。"),
                    channel="log", now=event.recorded_at)

    @staticmethod
    def drop(conn: Connection) -> None:
        conn.execute(outbox_table.delete())


def _record(conn: Connection, ledger: Ledger, row, event_type: str, attempts: int, error: str | None = None) -> None:
    data = {"key": row.key, "case_id": row.case_id, "channel": row.channel, "template": row.template,
            "recipient_role": row.recipient_role, "recipient_masked": row.recipient_masked,
            "caused_by": row.caused_by, "attempts": attempts}
    if error is not None:
        data["error"] = error
    stream = f"case-{row.case_id}" if row.case_id else f"notification-{row.key}"
    ledger.append(stream, [NewEvent(event_type, data, Metadata(actor=ACTOR, county=row.county,
                                                               correlation_id=row.case_id, causation_id=row.caused_by),
                                    event_id=str(uuid.uuid5(_NS, f"{event_type}:{row.key}")))],
                  ANY, conn=conn)


LEASE = timedelta(minutes=5)


def claim_due(ledger: Ledger, clock: Clock, limit: int) -> list:
    """Take up to `limit` due rows for this sender: status `sending` with a lease, so several notify
    instances never send the same row, and a sender that died mid-send leaves it for another after
    the lease (at-least-once)."""
    now = clock.now()
    due = (select(outbox_table.c.key).where(outbox_table.c.status.in_(("pending", "sending")),
                                            outbox_table.c.next_attempt_at <= isoformat(now))
           .order_by(outbox_table.c.next_attempt_at).limit(limit))
    if ledger.engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    with write_transaction(ledger.engine) as conn:
        keys = [r.key for r in conn.execute(due)]
        if not keys:
            return []
        conn.execute(update(outbox_table).where(outbox_table.c.key.in_(keys))
                     .values(status="sending", next_attempt_at=isoformat(now + LEASE)))
        return conn.execute(select(outbox_table).where(outbox_table.c.key.in_(keys))
                            .order_by(outbox_table.c.key)).all()


def deliver_due(ledger: Ledger, vault: Vault, channels: dict[str, Channel], clock: Clock, limit: int = 50) -> int:
    delivered = 0
    for row in claim_due(ledger, clock, limit):
        attempts = row.attempts + 1
        try:
            address = None
            if row.recipient_role == "resident":
                with read_transaction(ledger.engine) as conn:
                    fields = vault.reveal(conn, row.recipient_ref)
                if fields is None:
                    raise LookupError("the resident's contact details were erased")
                address = fields.get("phone")
            channels[row.channel].send(address, row.recipient_masked, row.body, row.key)
        except Exception as exc:
            error = mask_free_text(f"{type(exc).__name__}: {exc}")[:1000]     # a gateway may echo the address
            with write_transaction(ledger.engine) as conn:
                if attempts >= MAX_ATTEMPTS:
                    conn.execute(update(outbox_table).where(outbox_table.c.key == row.key)
                                 .values(status="failed", attempts=attempts, last_error=error))
                    _record(conn, ledger, row, "notification.failed", attempts, error)
                else:
                    retry_at = isoformat(clock.now() + timedelta(seconds=2 ** attempts))
                    conn.execute(update(outbox_table).where(outbox_table.c.key == row.key)
                                 .values(status="pending", attempts=attempts, next_attempt_at=retry_at,
                                         last_error=error))
            log.warning("notification %s attempt %d failed: %s", row.key, attempts, error)
            continue
        with write_transaction(ledger.engine) as conn:
            marked = conn.execute(update(outbox_table).where(outbox_table.c.key == row.key,
                                                             outbox_table.c.status == "sending")
                                  .values(status="sent", attempts=attempts, sent_at=isoformat(clock.now())))
            if marked.rowcount == 1:
                _record(conn, ledger, row, "notification.sent", attempts)
                delivered += 1
    return delivered


def list_outbox(conn: Connection, county: str, status: str | None = None, limit: int = 100) -> list[dict]:
    query = (select(outbox_table).where(outbox_table.c.county == county)
             .order_by(outbox_table.c.next_attempt_at.desc()).limit(limit))
    if status:
        query = query.where(outbox_table.c.status == status)
    return [dict(r) for r in conn.execute(query).mappings()]
