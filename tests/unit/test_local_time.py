"""Times shown to people are in the county's zone (issue #18.1a); stored times stay UTC."""
from __future__ import annotations

from datetime import datetime, timezone

from minqing.casefile import fold
from minqing.ledger import Metadata, RecordedEvent
from minqing.localtime import local_iso, plain
from services.intake.tracking import present_tracking
from services.notify import templates

SHANGHAI = "Asia/Shanghai"
# registered at 03:27 on 1 December in 龙江县: 19:27 UTC on 30 November
AT_0327 = "2026-11-30T19:27:00.123456Z"


def test_machine_fields_carry_the_offset_and_plain_words_read_local():
    assert local_iso(AT_0327, SHANGHAI) == "2026-12-01T03:27:00+08:00"
    assert plain(AT_0327, SHANGHAI) == "2026年12月1日 03:27"
    assert plain(AT_0327, SHANGHAI, "en") == "1 Dec 2026 03:27"
    assert local_iso(None, SHANGHAI) is None and plain(None, SHANGHAI) == ""
    assert local_iso(datetime(2026, 11, 30, 19, 27, tzinfo=timezone.utc), SHANGHAI) == "2026-12-01T03:27:00+08:00"


def test_messages_show_deadlines_in_local_plain_words():
    assert templates.local_time("2026-03-09T16:00:00.000000Z", SHANGHAI, "zh") == "2026年3月10日 00:00"


class _Policy:
    doc = {"timezone": SHANGHAI}

    def unit(self, code):
        return None

    def category(self, code):
        return {"name": "道路"}


def _event(position, type_, data, at):
    return RecordedEvent(position, f"e{position}", "case-c1", position, type_, 1, data,
                         Metadata("operator:t", "longjiang"), at, "h")


def test_the_residents_tracking_view_is_in_local_time():
    events = [_event(1, "case.reported", {
        "case_id": "c1", "county": "longjiang", "tracking_no": "LJ-20261201-0001", "channel": "hotline",
        "category": "201", "kind": "complaint", "urgency": "normal", "summary": "路灯不亮",
        "location": {"township": "heigang"}, "reported_at": AT_0327}, AT_0327)]
    view = present_tracking(fold("c1", events), events, _Policy())
    assert view["reported_at"] == "2026-12-01T03:27:00+08:00"
    assert view["history"][0]["at"] == "2026-12-01T03:27:00+08:00"
    assert view["history"][0]["when"] == "2026年12月1日 03:27"


def test_follow_up_states_follow_the_countys_settings():
    """The 回访 queue (#18.5): scheduled until the ask time, due then, overdue once the first ask has
    gone unanswered for the reply window."""
    from datetime import timedelta

    from services.notify.followup_queue import state_of
    delivered = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
    follow = {"after_minutes": 1440, "reply_within_minutes": 2880, "attempts": 2}
    assert state_of(delivered, delivered + timedelta(hours=23, minutes=59), follow) == "scheduled"
    assert state_of(delivered, delivered + timedelta(days=1), follow) == "due"
    assert state_of(delivered, delivered + timedelta(days=2, hours=23), follow) == "due"
    assert state_of(delivered, delivered + timedelta(days=3), follow) == "overdue"


def test_the_routing_explanation_is_in_local_time():
    """`GET /api/v1/cases/{id}/routing`: decision times, deadlines (fields and words) and pending timers
    in the county's zone; before, `at` and every deadline were UTC (`…T19:27:00.123456Z`)."""
    from pathlib import Path

    from minqing import county
    from services.routing.explain import explain

    policy = county.CountyPolicy(county.read_policy_file(Path("deploy/counties/longjiang.yaml")), 1)
    reported = {"case_id": "c1", "county": "longjiang", "tracking_no": "LJ-20261201-0001", "channel": "hotline",
                "category": "202", "kind": "complaint", "urgency": "normal", "summary": "路不通",
                "location": {"township": "heigang", "village": "heigang.kaoshan", "hamlet": "heigang.kaoshan.h11"},
                "reported_at": AT_0327}
    assigned = {"case_id": "c1", "unit": "heigang.kaoshan-station", "tier": "village", "cadre": "lj-c002",
                "response_due": "2026-11-30T23:27:00.000000Z", "resolution_due": "2026-12-01T19:27:00.000000Z",
                "rule": "t", "policy_version": 1}
    events = [_event(1, "case.reported", reported, AT_0327), _event(2, "case.assigned", assigned, AT_0327)]
    for lang, words in (("zh", "2026年12月2日 03:27 前办结"), ("en", "resolve by 2 Dec 2026 03:27")):
        why = explain(fold("c1", events), events, policy, lang)
        assert why["timezone"] == SHANGHAI
        assert why["decisions"][0]["at"] == "2026-12-01T03:27:00+08:00"
        assert words in why["decisions"][0]["words"], why["decisions"][0]["words"]
        assert why["current"]["resolution_due"] == "2026-12-02T03:27:00+08:00"
        assert why["current"]["response_due"] == "2026-12-01T07:27:00+08:00"
        assert why["pending_timers"] and all(t["due_at"].endswith("+08:00") for t in why["pending_timers"])
