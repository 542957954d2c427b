"""回访 (follow-up, issue #6 §4): after a result is delivered the resident is asked to rate it.

- The ask goes out `follow_up.after_minutes` after `case.delivered` (rules.py schedules it).
- The ask puts two questions (issue #17 §3, Beijing 12345's 解决率 and 满意率): was the matter actually
  solved, and how satisfied is the resident. The resident replies by SMS with two digits — the first
  1 solved / 2 not solved, the second 1 satisfied / 2 basically satisfied / 3 unsatisfied ("11",
  "23"; a space or comma between them is fine). A single digit keeps its old meaning, satisfaction
  only (solved unknown), so residents who learnt the old codes, and counties whose own template asks
  one question, still work. The SMS gateway forwards replies to `POST /api/v1/channels/sms/{county}`;
  or an operator enters the answers after a call (`POST /api/v1/cases/{id}/follow-up`, `solved`
  optional).
- No reply within `reply_within_minutes`: asked again, up to `attempts` asks; then `unreachable`.
Each outcome is one `case.followed_up`, appended against the version of the case it read, so an SMS
reply and an operator's entry racing each other cannot both count. Routing reopens an unsatisfied case.
"""
from __future__ import annotations

import logging
import re
import uuid
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import select, update

from minqing.casefile import fold, stream_of
from minqing.clock import Clock, isoformat
from minqing.db import write_transaction
from minqing.ledger import ConcurrencyError, DuplicateEventIdError, Ledger, Metadata, NewEvent
from services.notify.rules import case_context, compose, policy_for, rate_url
from services.notify.tables import followups_table

log = logging.getLogger("minqing.notify")
REPLY_CODES = {"1": "satisfied", "2": "basically_satisfied", "3": "unsatisfied"}
SOLVED_CODES = {"1": True, "2": False}
AWAITING = ("resolved", "delivered")       # a case whose latest result has not been rated yet
_NS = uuid.UUID("6b1c1b3e-9d0e-4a8a-9a53-7d4a0f3e2c11")
_CODE = re.compile(r"^\s*(?:([12])\s*[,，、.。]?\s*)?([123])\s*(?:[.。,，!！]?\s*)$")


class NotAwaiting(Exception):
    """The case has no result waiting for a rating (not resolved yet, or already rated)."""

    def __init__(self, status: str):
        self.status = status
        super().__init__(f"the case is {status}, not waiting for a follow-up rating")


class Reply(NamedTuple):
    rating: str
    solved: bool | None        # None: the reply answered the satisfaction question only


def reply_code(text: str) -> Reply | None:
    """The answers a reply text carries ('11', '2 3', '1，2', or the old single digit '1', ' 2 ', '3。'),
    or None when it is not a reply code."""
    match = _CODE.match(text or "")
    if not match:
        return None
    solved, rating = match.groups()
    return Reply(REPLY_CODES[rating], SOLVED_CODES[solved] if solved else None)


def record_follow_up(ledger: Ledger, case_id: str, rating: str, via: str, *, actor: str, county: str,
                     asks: int | None = None, by: str | None = None, event_id: str | None = None,
                     solved: bool | None = None, resolved_position: int | None = None) -> int:
    """Append `case.followed_up` if the case still awaits its rating; return its ledger position.
    `solved` is recorded only when the resident answered it (the event's field is absent otherwise).
    With `resolved_position` (a rating link's), only while that `case.resolved` is still the latest:
    checked on the history the append is made against, so a reopening in between cannot be rated."""
    stream = stream_of(case_id)
    for _ in range(10):
        history = ledger.read_stream(stream)
        case = fold(case_id, history)
        if case.status not in AWAITING:
            raise NotAwaiting(case.status)
        latest = [e.position for e in history if e.type == "case.resolved"][-1:]
        if resolved_position is not None and latest != [resolved_position]:
            raise NotAwaiting("resolved again")
        data = {"case_id": case_id, "rating": rating, "via": via, "asks": asks, "by": by}
        if solved is not None:
            data["solved"] = solved
        event = NewEvent("case.followed_up", data, Metadata(actor=actor, county=county, correlation_id=case_id),
                         event_id=event_id or str(uuid.uuid4()))
        try:
            return ledger.append(stream, [event], expected_version=case.version)[0].position
        except ConcurrencyError:
            continue      # a notification record or a racing rating moved the case: read it again
    raise ConcurrencyError(stream, -1, -1)


def advance(ledger: Ledger, clock: Clock) -> int:
    """Ask whoever is due, and record as unreachable whoever has used up their asks. Returns actions taken."""
    now = clock.now()
    taken = 0
    with write_transaction(ledger.engine) as conn:
        due = conn.execute(select(followups_table).where(followups_table.c.status.in_(("scheduled", "asked")),
                                                         followups_table.c.next_due <= isoformat(now))
                           .order_by(followups_table.c.next_due).limit(100)).all()
    for row in due:
        with write_transaction(ledger.engine) as conn:
            policy = policy_for(conn, row.county)
            if policy is None:
                continue
            follow = policy.notify["follow_up"]
            if row.asks < follow["attempts"]:
                history = ledger.read_stream(stream_of(row.case_id), conn=conn)
                case = fold(row.case_id, history)
                ctx = {**case_context(policy, case, history[0].data["reporter"]["phone_masked"]),
                       "rate_url": rate_url(policy, row.case_id, history)}
                compose(conn, policy, case, "follow_up", f"resident:{row.subject}", ctx,
                        key=f"{row.id}:follow_up:{row.asks + 1}", caused_by=row.id, at=isoformat(now))
                conn.execute(update(followups_table).where(followups_table.c.id == row.id).values(
                    status="asked", asks=row.asks + 1, asked_at=isoformat(now),
                    next_due=isoformat(now + timedelta(minutes=follow["reply_within_minutes"]))))
                taken += 1
                continue
        try:
            record_follow_up(ledger, row.case_id, "unreachable", "sms", actor="service:notify", county=row.county,
                             asks=row.asks, event_id=str(uuid.uuid5(_NS, f"unreachable:{row.id}")))
        except (NotAwaiting, DuplicateEventIdError):
            pass            # rated meanwhile, or recorded by another instance
        with write_transaction(ledger.engine) as conn:
            conn.execute(update(followups_table).where(followups_table.c.id == row.id,
                                                       followups_table.c.status.in_(("scheduled", "asked")))
                         .values(status="unreachable"))
        taken += 1
    return taken


def awaiting_reply(conn, county: str, subject: str):
    """The resident's follow-up that a reply answers: the latest one asked and not yet answered."""
    return conn.execute(select(followups_table).where(followups_table.c.county == county,
                                                      followups_table.c.subject == subject,
                                                      followups_table.c.status == "asked")
                        .order_by(followups_table.c.asked_at.desc()).limit(1)).first()
