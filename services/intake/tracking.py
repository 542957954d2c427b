"""What a resident sees when tracking a case: its status and history in plain words, nothing about
any other person (no cadre names or ids, no other resident). Times are the county's local time
(minqing/localtime.py): `at` and the due dates as ISO 8601 with the offset, `when` in plain words."""
from __future__ import annotations

from minqing.casefile import CaseFile
from minqing.localtime import local_iso, plain, zone_of

STATUS_TEXT = {
    "zh": {"reported": "已受理", "assigned": "已派单办理中", "accepted": "办理中", "resolved": "已办结",
           "delivered": "结果已送达", "followed_up": "已回访", "reopened": "重新办理中", "closed": "已结案",
           "withdrawn": "已撤回", "merged": "已并入同类诉求办理", "returned": "正在重新派单"},
    "en": {"reported": "registered", "assigned": "assigned and in progress", "accepted": "in progress",
           "resolved": "resolved", "delivered": "result delivered", "followed_up": "followed up",
           "reopened": "reopened", "closed": "closed", "withdrawn": "withdrawn", "merged": "merged with a similar case",
           "returned": "being dispatched again"},
}
EVENT_TEXT = {
    "zh": {"case.reported": "诉求已登记受理", "case.assigned": "已派给{unit}办理", "case.accepted": "承办单位已接单",
           "case.transferred": "已转交{unit}办理", "case.escalated": "已上报{unit}办理", "case.resolved": "已办结",
           "case.delivered": "办理结果已送达", "case.followed_up": "已回访", "case.reopened": "已重新办理",
           "case.closed": "已结案", "case.withdrawn": "已撤回", "case.merged": "已并入同类诉求",
           "case.returned": "正在重新派单", "case.joint_handling_started": "多部门联合办理（会诊）",
           "case.supervised": "已列入督办"},
    "en": {"case.reported": "registered", "case.assigned": "assigned to {unit}", "case.accepted": "accepted by the unit",
           "case.transferred": "transferred to {unit}", "case.escalated": "escalated to {unit}",
           "case.resolved": "resolved", "case.delivered": "result delivered", "case.followed_up": "followed up",
           "case.reopened": "reopened", "case.closed": "closed", "case.withdrawn": "withdrawn",
           "case.merged": "merged with a similar case", "case.returned": "being dispatched again",
           "case.joint_handling_started": "handled jointly by several departments",
           "case.supervised": "under supervision"},
}


def present_tracking(case: CaseFile, events, policy, lang: str = "zh") -> dict:
    lang = lang if lang in STATUS_TEXT else "zh"
    zone = zone_of(policy)
    history = []
    for event in events:
        template = EVENT_TEXT[lang].get(event.type)
        if template is None:
            continue
        unit_code = event.data.get("unit") or event.data.get("to_unit")
        unit = ((policy.unit(unit_code) or {}).get("name") if policy and unit_code else None) or unit_code or ""
        history.append({"at": local_iso(event.recorded_at, zone), "when": plain(event.recorded_at, zone, lang),
                        "text": template.format(unit=unit)})
    category = policy.category(case.category) if policy and case.category else None
    return {
        "tracking_no": case.tracking_no,
        "status": case.status,
        "status_text": STATUS_TEXT[lang].get(case.status, case.status),
        "category": category["name"] if category else case.category,
        "reported_at": local_iso(case.reported_at, zone),
        "resolution_due": local_iso(case.resolution_due, zone),
        "history": history,
    }
