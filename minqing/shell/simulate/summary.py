"""The figures at the end of a simulation, counted from the events the run recorded (read-only).

`digest` is a SHA-256 of the canonical JSON of the figures: two runs with the same seed on fresh
databases give the same digest (tests/e2e/test_simulate.py)."""
from __future__ import annotations

import hashlib
import json
from collections import Counter

SATISFIED = ("satisfied", "basically_satisfied")


def figures(ledger, county: str, after: int) -> dict:
    channels, escalated, pressure, ratings, types = Counter(), Counter(), Counter(), Counter(), Counter()
    assigned, resolved_cases, solved_answers = set(), set(), Counter()
    for event in ledger.iter_all(after):
        if event.county != county:
            continue
        types[event.type] += 1
        d = event.data
        if event.type == "case.reported":
            channels[d["channel"]] += 1
        elif event.type == "case.assigned":
            assigned.add(d["case_id"])
        elif event.type == "case.escalated":
            escalated[f"{d['from_tier']}→{d['to_tier']}{'' if d['automatic'] else ' (by hand)'}"] += 1
        elif event.type in ("case.chased", "case.supervised"):
            pressure[f"{d['level']}{' (automatic)' if d['by'].startswith('service:') or d['by'] == 'routing' else ''}"] += 1
        elif event.type == "case.followed_up":
            ratings[d["rating"]] += 1
            if d.get("solved") is not None:
                solved_answers[d["solved"]] += 1
        elif event.type == "case.resolved":
            resolved_cases.add(d["case_id"])
    rated = sum(ratings[r] for r in ("satisfied", "basically_satisfied", "unsatisfied"))
    return {
        "reports": sum(channels.values()),
        "reports_by_channel": dict(sorted(channels.items())),
        "assigned": len(assigned),
        "accepted": types["case.accepted"],
        "transferred": types["case.transferred"],
        "joint_handling": types["case.joint_handling_started"],
        "escalated": dict(sorted(escalated.items())),
        "deadline_warned": types["case.deadline_warned"],
        "overdue": types["case.overdue"],
        "pressure": dict(sorted(pressure.items())),
        "resolved": types["case.resolved"],
        "resolved_cases": len(resolved_cases),
        "reopened": types["case.reopened"],
        "ratings": dict(sorted(ratings.items())),
        "solved_by_resident": solved_answers[True],
        "not_solved_by_resident": solved_answers[False],
        "satisfaction": round(sum(ratings[r] for r in SATISFIED) / rated, 4) if rated else None,
        "visits": types["visit.logged"],
        "notifications_sent": types["notification.sent"],
    }


def digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def render(data: dict, *, county: str, start, days: int, seed: int, seconds: float, requests: int,
           trail: str) -> str:
    def block(title, mapping):
        if not mapping:
            return f"  {title:<22} 0"
        items = ", ".join(f"{k} {v}" for k, v in mapping.items())
        return f"  {title:<22} {sum(mapping.values())}  ({items})"
    sat = "–" if data["satisfaction"] is None else f"{data['satisfaction']:.1%}"
    return "\n".join([
        f"Simulated {days} days of {county} from {start.isoformat()} (seed {seed}) in {seconds:.0f} s, "
        f"{requests} HTTP requests.",
        block("reports", data["reports_by_channel"]),
        f"  {'assigned':<22} {data['assigned']}   accepted {data['accepted']}, transferred {data['transferred']}, "
        f"joint handling {data['joint_handling']}",
        block("escalated", data["escalated"]),
        f"  {'deadline warnings':<22} {data['deadline_warned']}   overdue {data['overdue']}",
        block("chased / supervised", data["pressure"]),
        f"  {'resolved':<22} {data['resolved']} ({data['resolved_cases']} cases)   reopened {data['reopened']}",
        block("follow-ups (回访)", data["ratings"]),
        f"  {'satisfaction (满意率)':<22} {sat}   the resident says solved {data['solved_by_resident']}, "
        f"not solved {data['not_solved_by_resident']}",
        f"  {'field visits':<22} {data['visits']}",
        f"  {'notifications sent':<22} {data['notifications_sent']}",
        f"figures digest {digest(data)}",
        f"requests digest {trail}",
    ])
