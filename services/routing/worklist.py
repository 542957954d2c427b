"""Worklists (issue #5 §7): the open cases of a unit or a cadre with their deadlines, overdue first.

Scope follows access control: a cadre sees their own unit's list, a supervisor the townships they
oversee, an operator the whole county. Returned cases (退回) wait here for a supervisor to re-dispatch.

Times are the county's local time (ISO 8601 with the offset, minqing/localtime.py). When open
deadlines of the county run into a year its calendar does not list, the answer carries a
`calendar_ends` warning (the same check routing's /health shows, `calendar_check`).
"""
from __future__ import annotations

from datetime import datetime

from marshmallow import Schema, fields, validate
from sqlalchemy import Connection, case as when, func, select

from minqing import access
from minqing.calendar import WorkCalendar
from minqing.clock import isoformat, parse_instant
from minqing.http import ApiError
from minqing.localtime import local_iso, zone_of
from services.routing.tables import cases_table, policies_table

c = cases_table.c


class WorklistQuery(Schema):
    unit = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    cadre = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    status = fields.String(load_default=None, validate=validate.OneOf(("assigned", "accepted", "returned")))
    # the console's "possible duplicates" before an operator saves a call (issue #14 §2): open cases
    # of one category in one township
    category = fields.String(load_default=None, validate=validate.Length(min=1, max=50))
    township = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))


def calendar_check(conn: Connection, county: str, policy) -> dict | None:
    """A warning when the county's open deadlines run past the last year its calendar lists."""
    if policy is None:
        return None
    latest = conn.execute(select(func.max(c.resolution_due)).where(c.county == county, c.is_open.is_(True))).scalar()
    return WorkCalendar.from_policy(policy.doc).warning(parse_instant(latest) if latest else None)


def calendar_health(conn: Connection, policy_in_force) -> dict:
    """routing's /health `calendar` check: `warn` (never `down`: the stack works, deadlines in the
    uncovered year skip weekends only) naming each county whose calendar ends too early."""
    counties = sorted(r.county for r in conn.execute(select(policies_table.c.county).distinct()))
    warnings = {}
    for county in counties:
        warning = calendar_check(conn, county, policy_in_force(conn, county))
        if warning is not None:
            warnings[county] = warning
    if not warnings:
        return {"status": "ok"}
    return {"status": "warn", "counties": warnings}


def dispatch_meetings(policy, now: datetime) -> list[dict]:
    """The next monthly dispatch meeting of each tier that holds one (seed 004: 区"一线办"每月25日通过
    召开调度会…予以统筹解决): its day — the tier's `dispatch_day`, or the next working day when that is a
    day off — as routing dates the cases it puts before it (assignment.next_dispatch_meeting)."""
    from services.routing.assignment import next_dispatch_meeting
    if policy is None:
        return []
    calendar = WorkCalendar.from_policy(policy.doc)
    return [{"tier": t["code"], "name": t["name"], "day_of_month": t["dispatch_day"],
             "next": next_dispatch_meeting(calendar, now, t["dispatch_day"]).isoformat()}
            for t in policy.tiers if t.get("dispatch_day")]


def worklist(conn: Connection, principal: access.Principal, policy, query: dict, now: datetime) -> dict:
    filters = [c.county == principal.county, c.is_open.is_(True)]
    unit = query["unit"]
    if principal.role == "cadre":
        if unit not in (None, principal.unit):
            raise ApiError(403, "forbidden", "a cadre sees their own unit's worklist", {"unit": ["not your unit"]})
        unit = principal.unit
    elif principal.role == "supervisor":
        scope = access.township_scope(principal, policy)
        if scope is not None:
            filters.append(c.township.in_(sorted(scope)))
    if unit:
        filters.append(c.unit == unit)
    if query["cadre"]:
        filters.append(c.cadre == query["cadre"])
    if query["status"]:
        filters.append(c.status == query["status"])
    if query["category"]:
        filters.append(c.category == query["category"])
    if query["township"]:
        filters.append(c.township == query["township"])
    stamp = isoformat(now)
    lapsed = (c.resolution_due < stamp) | (c.response_due < stamp)
    rows = conn.execute(select(cases_table).where(*filters)
                        .order_by(when((lapsed, 0), else_=1), c.resolution_due.is_(None), c.resolution_due, c.case_id)
                        .limit(query["limit"]).offset(query["offset"])).mappings().all()
    total = conn.execute(select(func.count()).select_from(cases_table).where(*filters)).scalar_one()
    zone = zone_of(policy)
    warning = calendar_check(conn, principal.county, policy)
    days = WorkCalendar.from_policy(policy.doc) if policy is not None else None
    return {
        "county": principal.county, "unit": unit, "as_of": local_iso(now, zone), "timezone": zone, "total": total,
        "warnings": [warning] if warning else [], "dispatch_meetings": dispatch_meetings(policy, now),
        # the county's warning windows (escalation.warn_before_hours): a board's "at risk" (issue #14 §4)
        "warn_before_hours": dict(policy.escalation["warn_before_hours"]) if policy is not None else None,
        "cases": [{
            "case_id": r["case_id"], "tracking_no": r["tracking_no"], "category": r["category"],
            "status": r["status"], "tier": r["tier"], "township": r["township"], "unit": r["unit"], "cadre": r["cadre"],
            "urgency": r["urgency"], "summary": r["summary"],
            "response_due": local_iso(r["response_due"], zone), "resolution_due": local_iso(r["resolution_due"], zone),
            "overdue": bool((r["resolution_due"] and r["resolution_due"] < stamp)
                            or (r["response_due"] and r["response_due"] < stamp)),
            "pressure": r["pressure"], "reply_due": local_iso(r["reply_due"], zone),
            # on the county's calendar in force (holidays, 调休): what a cadre plans a week by
            "resolution_working_days_left": days.working_days_left(now, parse_instant(r["resolution_due"]))
            if days is not None and r["resolution_due"] else None,
        } for r in rows],
    }
