"""Where a case goes and by when (派单, 上报, 转办): the one place for routing's placement rules.

- The lowest tier the category allows, moving up while no unit of a tier covers the place.
- At a department-level tier, the category's responsible department (and its co-departments when
  the tier handles jointly, seed 004's 会诊).
- The cadre holding liaison (包保) for the place, or else the unit's duty cadre with the fewest open
  cases (ties by id, so the choice is reproducible).
- Deadlines: accept within the category's response hours; resolve within the tier's limit in working
  or calendar days on the county calendar; a tier with a monthly dispatch meeting (seed 004's
  一线办, the 25th) counts its limit from the next meeting.

Pure: it takes the policy version in force and the moment of the deciding event (never the wall
clock), so the same inputs always give the same decision and the event records the outcome.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Mapping
from zoneinfo import ZoneInfo

from minqing.calendar import WorkCalendar
from minqing.clock import isoformat
from minqing.county import CountyPolicy, Place


class NoUnitError(LookupError):
    pass


def place_of(location: Mapping) -> Place:
    return Place(location["township"], location.get("village"), location.get("hamlet"))


def unit_for_tier(policy: CountyPolicy, category: dict, place: Place, tier: dict) -> tuple[dict, str] | None:
    if tier["level"] == "department":
        unit = policy.unit(category["department"])
        return unit, f"category {category['code']} belongs to {unit['name']} ({tier['name']})"
    covering = policy.units_covering(place, tier["code"])
    if not covering:
        return None
    return covering[0], f"{covering[0]['name']} covers the place at tier {tier['code']} ({tier['name']})"


def choose_unit(policy: CountyPolicy, category: dict, place: Place, start: str) -> tuple[dict, dict, str]:
    """(tier, unit, why) — moving up from `start` until a unit covers the place."""
    skipped = []
    for tier in policy.tiers_from(start):
        found = unit_for_tier(policy, category, place, tier)
        if found is None:
            skipped.append(tier["code"])
            continue
        unit, why = found
        if skipped:
            why += f" (no {'/'.join(skipped)} unit covers the place)"
        return tier, unit, why
    raise NoUnitError(f"no unit covers {place} for category {category['code']} from tier {start}")


def choose_cadre(policy: CountyPolicy, unit: dict, place: Place | None,
                 load: Mapping[str, int] | None = None) -> tuple[dict, str]:
    cadres = policy.cadres_of(unit["code"])
    if not cadres:
        raise NoUnitError(f"unit {unit['code']} has no cadre")
    for code in (place.codes if place else []):
        for cadre in cadres:
            if code in cadre["liaison"]:
                return cadre, f"cadre {cadre['id']} holds liaison (包保) for {policy.place_name(code) or code}"
    duty = [c for c in cadres if c.get("duty")] or cadres
    load = load or {}
    chosen = min(duty, key=lambda c: (load.get(c["id"], 0), c["id"]))
    if len(duty) == 1:
        return chosen, f"cadre {chosen['id']} is the unit's duty cadre"
    return chosen, (f"cadre {chosen['id']} is the unit's duty cadre with the fewest open cases "
                    f"({load.get(chosen['id'], 0)} of {len(duty)} on duty)")


def next_dispatch_meeting(calendar: WorkCalendar, at: datetime, day_of_month: int) -> date:
    """The first meeting day after the local day of `at`: that day of the month, or the next working
    day when it falls on a day off."""
    today = at.astimezone(ZoneInfo(calendar.timezone)).date()
    year, month = today.year, today.month
    while True:
        meeting = date(year, month, day_of_month)
        while not calendar.is_working_day(meeting):
            meeting += timedelta(days=1)
        if meeting > today:
            return meeting
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def deadlines(policy: CountyPolicy, category: dict, tier: dict, at: datetime) -> tuple[datetime, datetime, str]:
    """(response due, resolution due, the rule in words) for a case arriving at `tier` at `at`."""
    days = category["time_limits"][tier["code"]]
    kind = category.get("day_kind", "working")     # the county files: working days unless day_kind says calendar
    calendar = WorkCalendar.from_policy(policy.doc)
    start, words = at, ""
    if tier.get("dispatch_day"):
        meeting = next_dispatch_meeting(calendar, at, tier["dispatch_day"])
        zone = ZoneInfo(calendar.timezone)
        start = datetime.combine(meeting, time(12, 0), tzinfo=zone)
        words = f"put before the monthly dispatch meeting of {meeting.isoformat()}; "
    due = calendar.deadline(start, days, kind)
    response_due = at + timedelta(hours=category["response_hours"])
    words += f"accept within {category['response_hours']} hours, resolve within {days} {kind} days"
    if tier.get("dispatch_day"):
        words += " of the meeting"
    if kind == "working" and (missing := calendar.uncovered_years(start, due)):
        words += f"; the county calendar lists no holidays for {', '.join(map(str, missing))}, so only weekends were skipped"
    return response_due, due, words


def _category(policy: CountyPolicy, code: str) -> dict:
    category = policy.category(code)
    if category is None:
        raise NoUnitError(f"category {code} is not in policy version {policy.version}")
    return category


def decide_assignment(policy: CountyPolicy, reported: Mapping, at: datetime, load: Mapping[str, int] | None = None,
                      start_tier: str | None = None, first_contact: str | None = None) -> dict:
    """The data of `case.assigned` for a reported (or reopened) case."""
    category = _category(policy, reported["category"])
    place = place_of(reported["location"])
    tier, unit, unit_why = choose_unit(policy, category, place, start_tier or category["start_tier"])
    cadre, cadre_why = choose_cadre(policy, unit, place, load)
    response_due, due, limit_words = deadlines(policy, category, tier, at)
    start_words = (f"category {category['code']} ({category['name']}) starts at tier {category['start_tier']}"
                   if start_tier is None else f"reopened at tier {start_tier}")
    rule = f"{start_words}; {unit_why}; {cadre_why}; {limit_words} (policy version {policy.version})"
    return {
        "case_id": reported["case_id"],
        "unit": unit["code"],
        "cadre": cadre["id"],
        "tier": tier["code"],
        "response_due": isoformat(response_due),
        "resolution_due": isoformat(due),
        "policy_version": policy.version,
        "rule": rule,
        "first_contact": first_contact or cadre["id"],
    }


def decide_escalation(policy: CountyPolicy, case, at: datetime, reason: str, automatic: bool,
                      load: Mapping[str, int] | None = None) -> dict | None:
    """The data of `case.escalated` to the next tier that has a unit for the case, or None at the top."""
    category = _category(policy, case.category)
    place = place_of(case.location)
    above = policy.next_tier(case.tier)
    if above is None:
        return None
    try:
        tier, unit, unit_why = choose_unit(policy, category, place, above["code"])
    except NoUnitError:
        return None
    cadre, cadre_why = choose_cadre(policy, unit, place, load)
    response_due, due, limit_words = deadlines(policy, category, tier, at)
    return {
        "case_id": case.case_id, "from_unit": case.unit, "from_tier": case.tier,
        "to_unit": unit["code"], "to_tier": tier["code"], "to_cadre": cadre["id"], "reason": reason,
        "automatic": automatic, "resolution_due": isoformat(due), "response_due": isoformat(response_due),
        "policy_version": policy.version,
        "rule": f"escalated from tier {case.tier} to {tier['code']}; {unit_why}; {cadre_why}; {limit_words} "
                f"(policy version {policy.version})",
    }


def decide_transfer(policy: CountyPolicy, case, to_unit: str, at: datetime, reason: str,
                    load: Mapping[str, int] | None = None, any_tier: bool = False) -> dict:
    """The data of `case.transferred` (转办). A cadre transfers within the case's tier; a supervisor
    re-dispatching a returned case may pick any unit (`any_tier`). Raises ValueError naming the problem."""
    category = _category(policy, case.category)
    unit = policy.unit(to_unit)
    if unit is None:
        raise ValueError(f"unknown unit {to_unit!r}")
    if unit["code"] == case.unit:
        raise ValueError("the case is already with this unit")
    if not any_tier and unit["tier"] != case.tier:
        raise ValueError(f"a transfer stays at tier {case.tier}; {to_unit} is at tier {unit['tier']} (escalate instead)")
    tier = policy.tier(unit["tier"])
    if tier["code"] not in category["time_limits"]:
        raise ValueError(f"category {category['code']} is not handled at tier {tier['code']}")
    cadre, cadre_why = choose_cadre(policy, unit, place_of(case.location), load)
    response_due, due, limit_words = deadlines(policy, category, tier, at)
    if not any_tier and case.resolution_due:       # 转办 sideways keeps the promise made (推诿必究)
        kept = datetime.fromisoformat(case.resolution_due.replace("Z", "+00:00"))
        if kept < due:
            due, limit_words = kept, f"keeps the resolution deadline {case.resolution_due} it had"
    return {
        "case_id": case.case_id, "from_unit": case.unit or case.returned_by, "to_unit": unit["code"],
        "to_tier": tier["code"],
        "to_cadre": cadre["id"], "reason": reason, "resolution_due": isoformat(due),
        "response_due": isoformat(response_due), "policy_version": policy.version,
        "rule": f"transferred to {unit['name']}; {cadre_why}; {limit_words} (policy version {policy.version})",
    }


def joint_units_for(policy: CountyPolicy, case, tier_code: str) -> list[str]:
    """Co-handlers a joint tier brings in: the category's co-departments."""
    if not policy.tier(tier_code).get("joint"):
        return []
    return list(_category(policy, case.category).get("co_departments") or [])
