"""The follow-up queue (回访, issue #18.5): delivered results still waiting for the resident's rating,
for the operators who make the calls (seed 001: 接洽、登记、转办、督办、回访 闭合系统).

It lists notify's own follow-ups (`notify_followups`, scheduled or asked, not yet answered), with the
case read from its stream (principle 1). For each: when the result was delivered, how long ago, how
many SMS asks went out so far, and its state against the county's `notify.follow_up` settings:

- `scheduled`: the ask time (`after_minutes` after delivery) has not come yet;
- `due`: the ask time has come — a call can be made now;
- `overdue`: the first ask has gone unanswered for `reply_within_minutes`: call now.

`?state=due` (the default) lists what is due now, overdue first; `overdue` only those; `all` every
waiting follow-up, the scheduled ones too. A supervisor sees the townships they oversee. The
resident shows only as the masked phone; times are the county's local time.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from marshmallow import Schema, fields, validate
from sqlalchemy import Connection, select

from minqing import access
from minqing.casefile import fold, stream_of
from minqing.clock import parse_instant
from minqing.http import ApiError
from minqing.ledger import Ledger
from minqing.localtime import local_iso, zone_of
from services.notify.rules import policy_for
from services.notify.tables import followups_table

STATES = ("due", "overdue", "all")
WAITING = ("scheduled", "asked")


class FollowUpsQuery(Schema):
    county = fields.String(load_default=None, validate=validate.Length(min=1, max=40))
    state = fields.String(load_default="due", validate=validate.OneOf(STATES))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


def _waiting_text(minutes: int) -> str:
    days, rest = divmod(max(minutes, 0), 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}天{hours}小时" if days else f"{hours}小时{mins}分"


def state_of(delivered: datetime, now: datetime, follow: dict) -> str:
    ask_at = delivered + timedelta(minutes=follow["after_minutes"])
    if now < ask_at:
        return "scheduled"
    if now >= ask_at + timedelta(minutes=follow["reply_within_minutes"]):
        return "overdue"
    return "due"


def _item(conn: Connection, ledger: Ledger, row, policy, zone: str, now: datetime) -> dict | None:
    history = ledger.read_stream(stream_of(row.case_id), conn=conn)
    delivered = next((e for e in history if e.event_id == row.id), None)
    if delivered is None:
        return None
    case = fold(row.case_id, history)
    at = parse_instant(delivered.recorded_at)
    resolved = [e for e in history if e.type == "case.resolved" and e.position < delivered.position]
    minutes = int((now - at).total_seconds() // 60)
    township = (case.location or {}).get("township")
    category = policy.category(case.category or "") or {}
    return {
        "case_id": case.case_id, "tracking_no": case.tracking_no,
        "state": state_of(at, now, policy.notify["follow_up"]), "status": row.status,
        "category": case.category, "category_name": category.get("name"),
        "township": township, "township_name": policy.place_name(township) if township else None,
        "unit": case.unit, "unit_name": (policy.unit(case.unit) or {}).get("name") if case.unit else None,
        "resolution": resolved[-1].data.get("resolution") if resolved else None,
        "phone_masked": (history[0].data.get("reporter") or {}).get("phone_masked"),
        "delivered_at": local_iso(at, zone), "since_delivery_minutes": minutes, "since_delivery": _waiting_text(minutes),
        "attempts": row.asks, "last_asked_at": local_iso(row.asked_at, zone),
    }


def follow_up_queue(conn: Connection, ledger: Ledger, principal: access.Principal, query: dict, now: datetime) -> dict:
    county = query["county"] or principal.county
    access.authorize(principal, "follow_up.read", county)
    policy = policy_for(conn, county)
    if policy is None:
        raise ApiError(404, "not_found", "no such county is configured", {"county": ["unknown"]})
    scope = access.township_scope(principal, policy) if principal.role == "supervisor" else None
    zone = zone_of(policy)
    rows = conn.execute(select(followups_table).where(followups_table.c.county == county,
                                                      followups_table.c.status.in_(WAITING))).all()
    items = [i for i in (_item(conn, ledger, r, policy, zone, now) for r in rows) if i is not None]
    if scope is not None:
        items = [i for i in items if i["township"] in scope]
    counts = {s: sum(1 for i in items if i["state"] == s) for s in ("scheduled", "due", "overdue")}
    wanted = {"due": ("due", "overdue"), "overdue": ("overdue",), "all": ("scheduled", "due", "overdue")}[query["state"]]
    items = [i for i in items if i["state"] in wanted]
    items.sort(key=lambda i: (i["state"] != "overdue", -i["since_delivery_minutes"], i["case_id"]))
    return {"county": county, "state": query["state"], "as_of": local_iso(now, zone), "timezone": zone,
            "counts": counts, "follow_ups": items[:query["limit"]]}
