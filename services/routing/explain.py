"""`GET /api/v1/cases/{id}/routing`: why a case is where it is, in plain words (Simplified Chinese by
default, English on request), with the rule text each decision recorded and its ledger position, so a
cadre, a resident's advocate or an auditor can check it against the policy version named.

Times are the county's local time (minqing/localtime.py, issue #18.1): `at` and the deadlines as ISO
8601 with the zone's offset, deadlines inside the words in plain words (`2026年12月1日 03:27`).
The events keep UTC; `position` points to them."""
from __future__ import annotations

from minqing.casefile import CaseFile
from minqing.ledger import RecordedEvent
from minqing.localtime import local_iso, plain, zone_of
from services.routing.timers import pending

_LEVEL = {"zh": {"chase": "催办", "supervise": "督办", "listed": "挂牌督办"},
          "en": {"chase": "chased", "supervise": "supervised", "listed": "listed for supervision"}}
_DEADLINE = {"zh": {"response": "响应期限", "resolution": "办结期限"},
             "en": {"response": "response deadline", "resolution": "resolution deadline"}}


def _unit(policy, code):
    return ((policy.unit(code) if policy and code else None) or {}).get("name") or code


def _words(event: RecordedEvent, policy, lang: str) -> str | None:
    zone = zone_of(policy)
    d = {k: plain(v, zone, lang) if k in ("resolution_due", "due") else v for k, v in event.data.items()}
    zh = lang == "zh"
    u = lambda code: _unit(policy, code)       # noqa: E731
    match event.type:
        case "case.assigned":
            return (f"派单至{u(d['unit'])}（{d['tier']}级），承办干部 {d['cadre']}，{d['resolution_due']} 前办结" if zh else
                    f"assigned to {u(d['unit'])} (tier {d['tier']}), cadre {d['cadre']}, resolve by {d['resolution_due']}")
        case "case.accepted":
            return f"{d['cadre']} 已受理" if zh else f"accepted by {d['cadre']}"
        case "case.transferred":
            return (f"由{u(d['from_unit'])}转办至{u(d['to_unit'])}：{d['reason']}" if zh else
                    f"transferred from {u(d['from_unit'])} to {u(d['to_unit'])}: {d['reason']}")
        case "case.escalated":
            how = ("到期自动上报" if d["automatic"] else "干部申请上报") if zh else ("automatically" if d["automatic"] else "at the cadre's request")
            return (f"{how}：{d['from_tier']} → {d['to_tier']}，{u(d['to_unit'])} 承办，{d['resolution_due']} 前办结；{d['reason']}" if zh else
                    f"escalated {how} from tier {d['from_tier']} to {d['to_tier']} ({u(d['to_unit'])}), resolve by {d['resolution_due']}; {d['reason']}")
        case "case.returned":
            return (f"{u(d['from_unit'])}退回（非本单位职责）：{d['reason']}" if zh else
                    f"returned by {u(d['from_unit'])} as not theirs: {d['reason']}")
        case "case.joint_handling_started":
            co = "、".join(u(x) for x in d["co_units"]) if zh else ", ".join(u(x) for x in d["co_units"])
            return (f"会诊联办：{u(d['lead_unit'])}牵头，{co}协办" if zh else
                    f"joint handling: {u(d['lead_unit'])} leads with {co}")
        case "case.chased" | "case.supervised":
            return f"{_LEVEL[lang][d['level']]}：{d['note']}" if zh else f"{_LEVEL[lang][d['level']]}: {d['note']}"
        case "case.deadline_warned":
            return (f"{_DEADLINE[lang][d['deadline']]}（{d['due']}）临近提醒" if zh else
                    f"warning: the {_DEADLINE[lang][d['deadline']]} {d['due']} is near")
        case "case.overdue":
            return (f"{_DEADLINE[lang][d['deadline']]}（{d['due']}）已过，{u(d['holder_unit'])}承担超期责任" if zh else
                    f"the {_DEADLINE[lang][d['deadline']]} {d['due']} lapsed while {u(d['holder_unit'])} held the case")
        case "case.resolved":
            return f"{d['cadre']} 办结" + ("（现场办结）" if d["on_site"] else "") if zh else \
                f"resolved by {d['cadre']}" + (" on site" if d["on_site"] else "")
        case "case.reopened":
            return f"重新办理：{d['reason']}" if zh else f"reopened: {d['reason']}"
    return None


def explain(case: CaseFile, events: list[RecordedEvent], policy, lang: str = "zh") -> dict:
    zone = zone_of(policy)
    decisions = []
    for event in events:
        words = _words(event, policy, lang)
        if words is None:
            continue
        decisions.append({"position": event.position, "version": event.version, "at": local_iso(event.recorded_at, zone),
                          "type": event.type, "by": event.metadata.actor, "words": words,
                          "rule": event.data.get("rule"), "policy_version": event.data.get("policy_version")})
    tier = next((t for t in (policy.tiers if policy else []) if t["code"] == case.tier), None)
    return {
        "case_id": case.case_id, "county": case.county, "status": case.status, "language": lang, "timezone": zone,
        "current": None if not case.unit else {
            "tier": case.tier, "tier_name": tier["name"] if tier else None, "unit": case.unit,
            "unit_name": _unit(policy, case.unit), "cadre": case.cadre, "joint_units": list(case.joint_units),
            "response_due": local_iso(case.response_due, zone) if case.status == "assigned" else None,
            "resolution_due": local_iso(case.resolution_due, zone), "pressure": case.pressure,
            "reply_due": local_iso(case.reply_due, zone),
            "policy_version": case.policy_version},
        "first_contact": case.first_contact,      # 首问负责制: follows the case to its end
        "ladder": [{"code": t["code"], "name": t["name"], "level": t["level"]} for t in (policy.tiers if policy else [])],
        "decisions": decisions,
        "pending_timers": [{"kind": t.kind, "due_at": local_iso(t.due_at, zone)}
                           for t in sorted(pending(policy, case), key=lambda t: t.due_at)] if policy else [],
    }
