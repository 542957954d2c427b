"""Notify's pure rules: quiet hours, reply codes, templates, on-site day announcements."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from minqing.county import CountyPolicy, PolicyError, read_policy_file, validate_policy
from minqing.pins import PIN_SLOT
from services.notify import templates
from services.notify.announcements import due_on_site_day
from services.notify.followup import reply_code
from services.notify.quiet import defer_for_quiet

from pathlib import Path

QUIET = {"start": "21:00", "end": "08:00"}
SHANGHAI = "Asia/Shanghai"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_quiet_hours_hold_a_night_message_until_morning():
    """Issue #6 §4: no SMS to residents at night. 22:30 Shanghai (14:30 UTC) waits for 08:00 next day."""
    assert defer_for_quiet(utc(2026, 3, 2, 14, 30), QUIET, SHANGHAI) == utc(2026, 3, 3, 0, 0)


def test_quiet_hours_after_midnight_resume_the_same_morning():
    """03:00 Shanghai (19:00 UTC the day before) waits until 08:00 Shanghai that morning."""
    assert defer_for_quiet(utc(2026, 3, 2, 19, 0), QUIET, SHANGHAI) == utc(2026, 3, 3, 0, 0)


def test_daytime_and_no_quiet_hours_send_at_once():
    at = utc(2026, 3, 2, 2, 0)     # 10:00 Shanghai
    assert defer_for_quiet(at, QUIET, SHANGHAI) == at
    assert defer_for_quiet(utc(2026, 3, 2, 14, 30), None, SHANGHAI) == utc(2026, 3, 2, 14, 30)


def test_quiet_window_edges():
    """21:00 sharp is quiet; 08:00 sharp is not."""
    assert defer_for_quiet(utc(2026, 3, 2, 13, 0), QUIET, SHANGHAI) == utc(2026, 3, 3, 0, 0)
    assert defer_for_quiet(utc(2026, 3, 3, 0, 0), QUIET, SHANGHAI) == utc(2026, 3, 3, 0, 0)


@pytest.mark.parametrize("text,rating", [("1", "satisfied"), (" 2 ", "basically_satisfied"), ("3。", "unsatisfied"),
                                         ("3\n", "unsatisfied"), ("满意", None), ("", None), ("4", None)])
def test_reply_codes(text, rating):
    """Issue #6 §4: a single reply digit keeps its meaning, satisfaction only: 1 satisfied, 2 basically
    satisfied, 3 unsatisfied (DESIGN: 满意/基本满意/不满意); whether it was solved stays unknown. The
    two-digit answers (issue #17: solved, then satisfaction) are tested in test_followup_replies.py."""
    reply = reply_code(text)
    if rating is None:
        assert reply is None
    else:
        assert (reply.rating, reply.solved) == (rating, None)


def _ctx(**more):
    return {"county_name": "龙江县", "tracking_no": "LJ-20260302-0001", "category_name": "道路", "place_name": "靠山村",
            "phone_masked": "138****0000", "language": "zh", "pin": PIN_SLOT, **more}


def test_templates_in_chinese_by_default_and_english_available():
    zh = templates.render("receipt", "zh", _ctx())
    en = templates.render("receipt", "en", _ctx())
    assert "受理编号 LJ-20260302-0001" in zh and "龙江县" in zh
    assert "registered as LJ-20260302-0001" in en
    assert f"查询码 {PIN_SLOT}" in zh and f"PIN {PIN_SLOT}" in en      # filled in only when sent (issue #18.6)


def test_a_county_override_wins_and_a_broken_one_falls_back():
    overrides = {"zh": {"receipt": "【{{ county_name }}】已收到 {{ tracking_no }}"}}
    assert templates.render("receipt", "zh", _ctx(), overrides) == "【龙江县】已收到 LJ-20260302-0001"
    broken = {"zh": {"receipt": "{{ no_such_variable }}"}}
    assert "受理编号 LJ-20260302-0001" in templates.render("receipt", "zh", _ctx(), broken)


def test_every_template_renders_in_both_languages_without_personal_data():
    ctx = _ctx(unit_name="靠山村代理代办服务站", response_due="03月02日 10:00", resolution_due="03月09日 24:00",
               deadline="response", due="03月02日 10:00", cadre_name="驻村干部乙", from_unit_name="甲",
               to_unit_name="乙", automatic=True, reason="超期未办结", resolution="已修复", day="03月10日",
               time="14:00", cadres="驻点干部甲（驻村干部）")
    for lang in ("zh", "en"):
        for name in templates.TITLES[lang]:
            text = templates.render(name, lang, ctx)
            assert text and "{{" not in text
            assert "138****0000" not in text      # the masked phone is for the outbox record, not the message


def test_a_template_override_with_bad_syntax_is_refused_by_the_policy_check():
    raw = read_policy_file(Path("deploy/counties/longjiang.yaml"))
    raw["notify"]["templates"] = {"zh": {"receipt": "{{ tracking_no "}}
    with pytest.raises(PolicyError) as err:
        validate_policy(raw)
    assert any("notify.templates" in path for path in err.value.errors)


def _luyang() -> CountyPolicy:
    return CountyPolicy(read_policy_file(Path("deploy/counties/luyang.yaml")), 1)


def test_on_site_day_is_announced_two_days_ahead():
    """Seed 004: 规定每月10日下午为驻点工作日，提前两天发布公告 — from 09:00 on the 8th until the day begins."""
    policy = _luyang()
    assert due_on_site_day(policy, utc(2026, 3, 8, 0, 59)) is None           # 08:59 on the 8th
    assert due_on_site_day(policy, utc(2026, 3, 8, 1, 0)) == date(2026, 3, 10)   # 09:00 on the 8th
    assert due_on_site_day(policy, utc(2026, 3, 10, 5, 59)) == date(2026, 3, 10)  # 13:59 on the 10th: late, still
    assert due_on_site_day(policy, utc(2026, 3, 10, 6, 0)) is None            # 14:00: the day has begun
    assert due_on_site_day(policy, utc(2026, 3, 20, 1, 0)) is None


def test_a_county_without_on_site_days_announces_nothing():
    policy = CountyPolicy(read_policy_file(Path("deploy/counties/longjiang.yaml")), 1)
    assert due_on_site_day(policy, utc(2026, 3, 8, 2, 0)) is None
