"""A resident hears about their case in the order things happened (issue #18.6).

Each message to a resident about a case was caused by an event of the case's stream; its place in
line is that event's ledger position. The sender sends a resident's message only when no earlier
one to the same resident about the same case is still unsent (pending — deferred by quiet hours or
waiting for a retry —, claimed or being sent). Otherwise the later message waits behind it: 已受理
always before 已办结. A failed message (its attempts used up, or interrupted) no longer holds the line;
an operator may retry it, and then it is late, not lost.

Quiet hours and urgency: a message that may go out at night (an urgent case; the case may have
become urgent after its receipt was written, when duplicates were merged into it) releases the
earlier messages held for the morning, which go out first, in order. So an urgent case's resident
gets the whole story at once rather than its end first.
"""
from __future__ import annotations

from sqlalchemy import Connection, select, update

from minqing.clock import isoformat
from minqing.ledger import Ledger
from services.notify.tables import outbox_table

UNSENT = ("pending", "claimed", "sending")


def _positions(conn: Connection, ledger: Ledger, case_id: str) -> dict[str, int]:
    return {e.event_id: e.position for e in ledger.read_stream(f"case-{case_id}", conn=conn)}


def earlier_unsent(conn: Connection, ledger: Ledger, row) -> list:
    """The resident's unsent messages about the same case caused by earlier events than `row`'s."""
    if row.recipient_role != "resident" or not row.case_id:
        return []
    others = conn.execute(select(outbox_table).where(
        outbox_table.c.case_id == row.case_id, outbox_table.c.recipient_ref == row.recipient_ref,
        outbox_table.c.status.in_(UNSENT), outbox_table.c.key != row.key)).all()
    if not others:
        return []
    positions = _positions(conn, ledger, row.case_id)
    mine = positions.get(row.caused_by)
    if mine is None:
        return []
    return [o for o in others if positions.get(o.caused_by, mine) < mine]


def release_held(conn: Connection, earlier: list, now) -> int:
    """An urgent message releases the earlier ones held by quiet hours: due now, out of quiet."""
    keys = [o.key for o in earlier if o.status == "pending" and o.quiet]
    if not keys:
        return 0
    return conn.execute(update(outbox_table).where(outbox_table.c.key.in_(keys), outbox_table.c.status == "pending")
                        .values(quiet=0, next_attempt_at=isoformat(now))).rowcount


def wait_until(earlier: list, now) -> str:
    """When the held message is looked at again: when the first earlier one is due; at once (the next
    round) while an earlier one is being sent."""
    stamp = isoformat(now)
    if any(o.status != "pending" for o in earlier):
        return stamp
    return max(stamp, min(o.next_attempt_at for o in earlier))
