"""Assignment (派单): the lowest tier the category allows, the unit covering the place, the cadre
holding liaison (包保) for the place or else the unit's duty cadre.

Pure decision logic: it takes the policy version in force and the time of the report (from the
event, never the wall clock), so a replay reproduces the same decision and deadlines.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from minqing.calendar import WorkCalendar
from minqing.clock import isoformat
from minqing.county import CountyPolicy, Place


class NoUnitError(LookupError):
    pass


def _tiers_from(policy: CountyPolicy, start: str) -> list[str]:
    tiers = list(policy.doc["tiers"])
    return tiers[tiers.index(start):] if start in tiers else tiers


def choose_unit(policy: CountyPolicy, category: dict, place: Place) -> tuple[str, dict, str]:
    """(tier, unit, why) — moving up from the start tier until a unit covers the place."""
    skipped = []
    for tier in _tiers_from(policy, category["start_tier"]):
        if tier == "department":
            unit = policy.unit(category["department"])
            why = f"category {category['code']} belongs to {unit['name']} at county-department level"
        else:
            covering = policy.units_covering(place, tier)
            if not covering:
                skipped.append(tier)
                continue
            unit = covering[0]
            why = f"{unit['name']} covers the place at {tier} level"
        if skipped:
            why += f" (no {'/'.join(skipped)} unit covers the place)"
        return tier, unit, why
    raise NoUnitError(f"no unit covers {place} for category {category['code']}")


def choose_cadre(policy: CountyPolicy, unit: dict, place: Place) -> tuple[dict, str]:
    cadres = policy.cadres_of(unit["code"])
    if not cadres:
        raise NoUnitError(f"unit {unit['code']} has no cadre")
    for code in place.codes:
        for cadre in cadres:
            if code in cadre["liaison"]:
                return cadre, f"cadre {cadre['id']} holds liaison (包保) for {policy.place_name(code) or code}"
    duty = next((c for c in cadres if c.get("duty")), cadres[0])
    return duty, f"cadre {duty['id']} is the unit's duty cadre"


def time_limit_days(category: dict, tier: str) -> int:
    limits = category["time_limits"]
    if tier in limits:
        return limits[tier]
    return max(limits.values())


def decide_assignment(policy: CountyPolicy, reported: dict, at: datetime) -> dict:
    """The data of the `case.assigned` event for a freshly reported case."""
    category = policy.category(reported["category"])
    if category is None:
        raise NoUnitError(f"category {reported['category']} is not in policy version {policy.version}")
    loc = reported["location"]
    place = Place(loc["township"], loc.get("village"), loc.get("hamlet"))
    tier, unit, unit_why = choose_unit(policy, category, place)
    cadre, cadre_why = choose_cadre(policy, unit, place)
    days = time_limit_days(category, tier)
    kind = category.get("day_kind", "calendar")
    calendar = WorkCalendar.from_policy(policy.doc)
    due = calendar.deadline(at, days, kind)
    caveat = ""
    if kind == "working" and (missing := calendar.uncovered_years(at, due)):
        caveat = f"; the county calendar lists no holidays for {', '.join(map(str, missing))}, so only weekends were skipped"
    rule = (f"category {category['code']} ({category['name']}) starts at {category['start_tier']} level; "
            f"{unit_why}; {cadre_why}; accept within {category['response_hours']} hours, resolve within "
            f"{days} {kind} days{caveat} (policy version {policy.version})")
    return {
        "case_id": reported["case_id"],
        "unit": unit["code"],
        "cadre": cadre["id"],
        "tier": tier,
        "response_due": isoformat(at + timedelta(hours=category["response_hours"])),
        "resolution_due": isoformat(due),
        "policy_version": policy.version,
        "rule": rule,
        "first_contact": cadre["id"],
    }
