"""On-site day announcements (seed 004: 规定每月10日下午为驻点工作日，提前两天发布公告和驻点工作"连心卡"，
内容包括驻点干部单位、职务、联系方式等).

For a county whose policy has `notify.on_site_days`, every unit of that tier gets an announcement of
its next on-site day `announce_days_ahead` days before, from `announce_at` local time, naming the
unit, its cadres and their roles, sent to the unit's notice board (`board:<unit>` contact; the log
when none is set). A notify that was down on the day announces when it comes back, until the on-site
day begins; the outbox key (county, day, unit) keeps it to one announcement each.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select

from minqing.clock import Clock, isoformat
from minqing.county import CountyPolicy
from minqing.db import write_transaction
from minqing.ledger import Ledger
from services.notify import templates
from services.notify.rules import contact_of, enqueue, policy_for
from services.notify.tables import policies_table

_NS = uuid.UUID("9a4e3f0c-1d2b-4c5e-8f70-3b2a1c0d9e8f")
ROLE_TITLES = {"zh": {"proxy_agent": "代办员", "village_cadre": "驻村干部", "township_cadre": "乡镇干部",
                      "department_cadre": "部门干部"},
               "en": {"proxy_agent": "proxy agent", "village_cadre": "village cadre",
                      "township_cadre": "township cadre", "department_cadre": "department cadre"}}


def _hhmm(text: str) -> time:
    h, m = text.split(":")
    return time(int(h), int(m))


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    return date(day.year + month // 12, month % 12 + 1, 1)


def due_on_site_day(policy: CountyPolicy, now: datetime) -> date | None:
    """The on-site day whose announcement window contains `now`, if any."""
    rule = policy.notify["on_site_days"]
    if not rule:
        return None
    tz = ZoneInfo(policy.doc["timezone"])
    local = now.astimezone(tz)
    for months in (0, 1):
        first = _add_months(local.date().replace(day=1), months)
        day = first.replace(day=rule["day_of_month"])
        starts = datetime.combine(day, _hhmm(rule["time"]), tzinfo=tz)
        opens = datetime.combine(date.fromordinal(day.toordinal() - rule["announce_days_ahead"]),
                                 _hhmm(rule["announce_at"]), tzinfo=tz)
        if opens <= local < starts:
            return day
    return None


def announce(ledger: Ledger, clock: Clock) -> int:
    now = clock.now()
    added = 0
    with write_transaction(ledger.engine) as conn:
        counties = [r.county for r in conn.execute(select(policies_table.c.county))]
        for county in counties:
            policy = policy_for(conn, county)
            day = due_on_site_day(policy, now) if policy else None
            if day is None:
                continue
            rule, lang = policy.notify["on_site_days"], policy.notify["language"]
            for unit in (u for u in policy.doc["units"] if u["tier"] == rule["tier"]):
                cadres = "、".join(f"{c['name']}（{ROLE_TITLES[lang].get(c['role'], c['role'])}）"
                                  for c in policy.cadres_of(unit["code"]))
                place = next(iter(unit["covers"]), None)
                body = templates.render("on_site_day", lang, {
                    "county_name": policy.doc["name"], "day": templates.local_time(
                        datetime.combine(day, _hhmm(rule["time"]), tzinfo=ZoneInfo(policy.doc["timezone"])),
                        policy.doc["timezone"], lang).split(" ")[0],
                    "time": rule["time"], "unit_name": unit["name"], "cadres": cadres,
                    "place_name": policy.place_name(place) or unit["name"]}, policy.notify["templates"])
                key = f"on-site:{county}:{day.isoformat()}:{unit['code']}"
                recipient = f"board:{unit['code']}"
                channel, masked = contact_of(conn, county, recipient)
                added += enqueue(conn, key=key, county=county, case_id=None, template="on_site_day",
                                 recipient=recipient, recipient_masked=masked, channel=channel, body=body,
                                 caused_by=str(uuid.uuid5(_NS, key)), not_before=isoformat(now), quiet=False)
    return added
