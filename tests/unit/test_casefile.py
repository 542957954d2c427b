"""Folding a case's stream into its current state."""
from dataclasses import replace

from minqing.casefile import CaseFile, fold
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


def _stream(*steps):
    return [_event(v, type_, data) for v, (type_, data) in enumerate(steps, 1)]


_REPORTED = ("case.reported", {"county": "longjiang", "tracking_no": "LJ-1", "category": "202", "channel": "hotline",
                               "kind": "help", "urgency": "normal", "summary": "s", "location": {"township": "heigang"},
                               "reporter": {"subject": "r-1"}, "reported_at": "2026-11-21T00:00:00.000000Z"})
_ASSIGNED = ("case.assigned", {"unit": "u1", "cadre": "c1", "tier": "village", "response_due": "r1",
                               "resolution_due": "d1", "policy_version": 1, "rule": "x", "first_contact": "c1"})
_LIVES = [
    # escalation after the lapse, joint handling, pressure, a reply, a sideways transfer keeping pressure
    _stream(_REPORTED, _ASSIGNED, ("case.deadline_warned", {"deadline": "response", "due": "r1"}),
            ("case.overdue", {"deadline": "response", "due": "r1"}), ("case.accepted", {"cadre": "c2"}),
            ("case.overdue", {"deadline": "resolution", "due": "d1"}),
            ("case.chased", {"level": "chase", "reply_due": "p1"}), ("case.progress_noted", {"cadre": "c2", "reply_to": "x"}),
            ("case.supervised", {"level": "supervise"}),
            ("case.transferred", {"to_unit": "u2", "to_cadre": "c3", "resolution_due": "d2", "policy_version": 1}),
            ("case.escalated", {"to_unit": "u3", "to_cadre": "c4", "to_tier": "township", "resolution_due": "d3",
                                "response_due": "r3", "policy_version": 2}),
            ("case.joint_handling_started", {"co_units": ["u4", "u1"]}), ("notification.sent", {}),
            ("case.urgency_raised", {"urgency": "urgent", "reports": 2}),
            ("case.resolved", {"cadre": "c4", "unit": "u3", "on_site": True, "resolution": "ok"}),
            ("case.delivered", {"channel": "sms"}), ("case.followed_up", {"rating": "dissatisfied"}),
            # reopened and assigned again; returned, re-dispatched, closed
            ("case.reopened", {"reason": "r"}), _ASSIGNED, ("case.returned", {"from_unit": "u1", "cadre": "c1"}),
            ("case.transferred", {"to_unit": "u5", "to_cadre": "c5", "resolution_due": "d5", "policy_version": 2}),
            ("case.closed", {"reason": "done"})),
    _stream(_REPORTED, ("case.merged", {"into_case_id": "c0"})),
    _stream(_REPORTED, _ASSIGNED, ("case.withdrawn", {"reason": "w"})),
]


def test_fold_is_the_events_applied_one_by_one_with_or_without_history():
    """fold builds one object in place; without history (the timer sweep's fold) every other field is
    the same as applying the events one by one (issue #16)."""
    for events in _LIVES:
        for n in range(len(events) + 1):
            expected = CaseFile("c1")
            for event in events[:n]:
                expected = expected.apply(event)
            assert fold("c1", events[:n]) == expected
            lean = fold("c1", events[:n], history=False)
            assert lean == replace(expected, history=()) and lean.version == n
