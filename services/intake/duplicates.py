"""Duplicate reports (issue #4 §5): a report matching an open case is linked to it (`case.merged`)
instead of creating double work, and the first repeat raises the original's urgency.

A match is an open case of the same county and category
- reported by the same resident (their vault subject: the same phone number), or
- at the same spot within the county's `duplicates.window_hours` before this report: the same
  address (compared without spaces and punctuation) in the same village, or coordinates within
  `duplicates.radius_m` metres.
A hamlet or village alone is not a spot: two road reports from one village are often two roads.
The oldest match is the original. Anonymous reports match by spot only.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, or_, select

from minqing.clock import isoformat
from minqing.county import CountyPolicy
from services.intake.tables import open_cases_table

c = open_cases_table.c


def spot_of(address: str | None) -> str | None:
    if not address:
        return None
    return re.sub(r"[\s\W_]+", "", address).lower() or None


def metres_between(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


def find_original(conn: Connection, policy: CountyPolicy, category: str, subject: str | None, place: str,
                  spot: str | None, coordinates: dict | None, reported_at: datetime) -> str | None:
    rules = policy.doc.get("duplicates", {})
    window = timedelta(hours=rules.get("window_hours", 72))
    recent = c.reported_at >= isoformat(reported_at - window)
    matches = []
    if subject:
        matches.append(c.subject == subject)
    if spot:
        matches.append(and_(recent, c.place == place, c.spot == spot))
    if coordinates:
        matches.append(and_(recent, c.lat.is_not(None)))
    if not matches:
        return None
    rows = conn.execute(select(c.case_id, c.subject, c.place, c.spot, c.lat, c.lon)
                        .where(c.county == policy.county, c.category == category, c.open.is_(True), or_(*matches))
                        .order_by(c.reported_at, c.case_id).limit(500)).all()
    radius = rules.get("radius_m", 100)
    for row in rows:
        if subject and row.subject == subject:
            return row.case_id
        if spot and row.spot == spot and row.place == place:
            return row.case_id
        if coordinates and row.lat is not None and \
                metres_between(coordinates["lat"], coordinates["lon"], row.lat, row.lon) <= radius:
            return row.case_id
    return None


def reports_of(conn: Connection, original: str) -> int:
    """How many reports of this matter there are: the original and every report merged into it."""
    return 1 + conn.execute(select(func.count()).select_from(open_cases_table).where(c.merged_into == original)).scalar_one()


def find_requests(conn: Connection, county: str, filters: dict, limit: int) -> list[str]:
    """Case ids for an Open311 GET requests: by ids, service codes, dates and open/closed, newest first."""
    query = select(c.case_id).where(c.county == county)
    if filters["ids"]:
        query = query.where(c.case_id.in_(filters["ids"]))
    else:
        query = query.where(c.reported_at >= isoformat(filters["start"]))
        if filters["end"] is not None:
            query = query.where(c.reported_at <= isoformat(filters["end"]))
    if filters["codes"]:
        query = query.where(c.category.in_(filters["codes"]))
    if set(filters["statuses"]) == {"open"}:
        query = query.where(c.open.is_(True))
    elif set(filters["statuses"]) == {"closed"}:
        query = query.where(c.open.is_(False))
    return [r.case_id for r in conn.execute(query.order_by(c.reported_at.desc(), c.case_id).limit(limit))]
