"""The case view for operators and cadres (`GET /api/v1/cases/{id}`): the case folded from its stream,
with what was done at each step — resolutions, notes and written replies to supervision, the reasons
for escalations, transfers and returns, the follow-up's outcome (issue #18.4) — and who did it.

Times are the county's local time (minqing/localtime.py): machine fields as ISO 8601 with the
offset, each step also `when` in plain words. Personal data stays masked: events carry none, and
free texts were masked when they were entered; they are masked again here, so a text recorded
before a masking rule existed does not show more than one recorded today.
"""
from __future__ import annotations

from minqing.casefile import CaseFile
from minqing.localtime import local_iso, plain, zone_of
from minqing.personal_data import mask_free_text

INSTANT_FIELDS = ("due", "reply_due", "response_due", "resolution_due")
TEXT_FIELDS = ("note", "reason", "resolution", "rule")
UNIT_FIELDS = ("unit", "from_unit", "to_unit", "lead_unit")
CADRE_FIELDS = ("cadre", "to_cadre")


def _cadre_name(policy, ref: str | None) -> str | None:
    """The name of a cadre (a public official) for `lj-c002` or `cadre:lj-c002`; None for anyone else."""
    if not ref or policy is None:
        return None
    cadre_id = ref.split(":", 1)[1] if ref.startswith("cadre:") else ref
    cadre = policy.cadre(cadre_id)
    return cadre["name"] if cadre else None


def _unit_name(policy, code: str | None) -> str | None:
    return ((policy.unit(code) or {}).get("name") if policy and code else None)


def present_step(step: dict, policy, zone: str) -> dict:
    what = dict(step.get("what") or {})
    for key in INSTANT_FIELDS:
        if what.get(key):
            what[key] = local_iso(what[key], zone)
    for key in TEXT_FIELDS:
        if isinstance(what.get(key), str):
            what[key] = mask_free_text(what[key])
    names = {}
    for key in UNIT_FIELDS:
        if _unit_name(policy, what.get(key)):
            names[key] = _unit_name(policy, what[key])
    for key in CADRE_FIELDS:
        if _cadre_name(policy, what.get(key)):
            names[key] = _cadre_name(policy, what[key])
    if what.get("co_units"):
        names["co_units"] = [_unit_name(policy, u) or u for u in what["co_units"]]
    out = {"position": step["position"], "version": step["version"], "type": step["type"],
           "at": local_iso(step["at"], zone), "when": plain(step["at"], zone), "by": step.get("by"),
           "by_name": _cadre_name(policy, step.get("by")), "what": what}
    if names:
        out["names"] = names
    return out


def present_case(case: CaseFile, policy) -> dict:
    zone = zone_of(policy)
    loc = case.location or {}
    return {
        "case_id": case.case_id,
        "tracking_no": case.tracking_no,
        "county": case.county,
        "timezone": zone,
        "status": case.status,
        "channel": case.channel,
        "category": case.category,
        "kind": case.kind,
        "urgency": case.urgency,
        "summary": case.summary,
        "location": {tier: {"code": loc.get(tier), "name": policy.place_name(loc.get(tier)) if policy else None}
                     for tier in ("township", "village", "hamlet") if loc.get(tier)},
        "reported_at": local_iso(case.reported_at, zone),
        "registered_at": local_iso(case.registered_at, zone),
        "assignment": None if not case.unit else {
            "tier": case.tier, "unit": case.unit, "unit_name": _unit_name(policy, case.unit),
            "cadre": case.cadre, "cadre_name": _cadre_name(policy, case.cadre),
            "response_due": local_iso(case.response_due, zone), "resolution_due": local_iso(case.resolution_due, zone),
            "policy_version": case.policy_version},
        "rating": case.rating,
        "version": case.version,
        "history": [present_step(step, policy, zone) for step in case.history],
    }
