"""Folding a case's stream into its current state."""
from minqing.casefile import fold
from minqing.ledger import Metadata, RecordedEvent


def _event(version, type_, data):
    return RecordedEvent(version, f"e{version}", "case-c1", version, type_, 1, {"case_id": "c1", **data},
                         Metadata("t", "longjiang"), f"2026-11-2{version}T00:00:00.000000Z", "")


def test_fold_follows_the_case_through_its_life():
    events = [
        _event(1, "case.reported", {"county": "longjiang", "tracking_no": "LJ-1", "category": "202", "channel": "hotline",
                                    "kind": "help", "urgency": "normal", "summary": "s", "location": {"township": "heigang"},
                                    "reporter": {}, "reported_at": "2026-11-21T00:00:00.000000Z"}),
        _event(2, "case.assigned", {"unit": "u1", "cadre": "c1", "tier": "village", "response_due": "r",
                                    "resolution_due": "d", "policy_version": 1, "rule": "x"}),
        _event(3, "notification.sent", {}),
        _event(4, "case.resolved", {"cadre": "c1", "unit": "u1", "on_site": False, "resolution": "ok"}),
    ]
    case = fold("c1", events[:3])
    assert (case.status, case.unit, case.cadre, case.version, case.is_open) == ("assigned", "u1", "c1", 3, True)
    case = fold("c1", events)
    assert (case.status, case.resolved_by, case.is_open, len(case.history)) == ("resolved", "c1", False, 4)
