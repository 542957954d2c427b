"""Working-day deadlines on the county's published calendar (issue #5: "deadlines that skip a Chinese
holiday and count a make-up working day"), with 2026's dates from 国务院办公厅关于2026年部分节假日安排的通知:
"国庆节：10月1日（周四）至7日（周三）放假调休，共7天。9月20日（周日）、10月10日（周六）上班。" """
from datetime import datetime, timezone
from pathlib import Path

import pytest

from minqing.calendar import WorkCalendar
from minqing.county import PolicyError, read_policy_file, validate_policy

LONGJIANG = Path(__file__).resolve().parents[2] / "deploy" / "counties" / "longjiang.yaml"


@pytest.fixture(scope="module")
def calendar():
    return WorkCalendar.from_policy(read_policy_file(LONGJIANG))


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def test_national_day_is_skipped_and_the_make_up_saturday_counts(calendar):
    # Wed 30 Sep 10:00 local; Oct 1–7 off; 8 (Thu), 9 (Fri), 10 (Sat, 调休上班), 12 (Mon), 13 (Tue)
    due = calendar.deadline(utc(2026, 9, 30, 2, 0), 5, "working")
    assert due.astimezone(timezone.utc) == utc(2026, 10, 13, 16, 0)


def test_a_make_up_sunday_counts(calendar):
    # Fri 18 Sep; Sat 19 off; Sun 20 is a working day (调休); then Mon 21 … Thu 24
    due = calendar.deadline(utc(2026, 9, 18, 2, 0), 5, "working")
    assert due.astimezone(timezone.utc) == utc(2026, 9, 24, 16, 0)


def test_spring_festival_is_skipped(calendar):
    # Fri 13 Feb; Sat 14 is a working day (调休); 15–23 off; 24, 25, 26, 27 (Fri)
    due = calendar.deadline(utc(2026, 2, 13, 2, 0), 5, "working")
    assert due.astimezone(timezone.utc) == utc(2026, 2, 27, 16, 0)


def test_an_ordinary_week(calendar):
    due = calendar.deadline(utc(2026, 11, 20, 2, 0), 5, "working")          # Friday → next Friday, 24:00
    assert due.astimezone(timezone.utc) == utc(2026, 11, 27, 16, 0)
    assert calendar.deadline(utc(2026, 11, 20, 2, 0), 5, "calendar") == utc(2026, 11, 25, 2, 0)


def test_the_local_day_decides_not_utc(calendar):
    # 23:30 UTC on Thursday 19 Nov is already Friday 07:30 in 龙江县
    assert calendar.deadline(utc(2026, 11, 19, 23, 30), 1, "working").astimezone(timezone.utc) == utc(2026, 11, 23, 16, 0)


def test_a_day_cannot_be_both_holiday_and_workday():
    policy = read_policy_file(LONGJIANG)
    policy["calendar"]["workdays"] = policy["calendar"]["workdays"] + ["2026-10-01"]
    with pytest.raises(PolicyError) as info:
        validate_policy(policy)
    assert "calendar.workdays" in info.value.errors


def test_working_days_left_count_down_the_deadline_over_national_day(calendar):
    """The worklist's "N working days left" is the inverse of the deadline: registered Wed 30 Sep with 5
    working days, 5 are left that day; over the holiday (Oct 1–7) still 5; on Sat 10 Oct (调休上班) 2
    (Mon 12, Tue 13); on the last day, Tue 13, 0; at its end none (due)."""
    due = calendar.deadline(utc(2026, 9, 30, 2, 0), 5, "working")
    assert calendar.working_days_left(utc(2026, 9, 30, 2, 0), due) == 5
    assert calendar.working_days_left(utc(2026, 10, 4, 2, 0), due) == 5
    assert calendar.working_days_left(utc(2026, 10, 10, 2, 0), due) == 2
    assert calendar.working_days_left(utc(2026, 10, 13, 15, 59), due) == 0
    assert calendar.working_days_left(due, due) is None


def test_luyangs_next_dispatch_meeting_is_the_25th_or_the_next_working_day():
    """Seed 004: "区'一线办'每月25日通过召开调度会，予以统筹解决". 25 Oct 2026 is a Sunday, so that
    meeting is held Monday 26 Oct; on the meeting day itself the next one is November's."""
    from minqing.county import CountyPolicy
    from services.routing.worklist import dispatch_meetings
    policy = CountyPolicy(read_policy_file(LONGJIANG.parent / "luyang.yaml"), 1)
    assert dispatch_meetings(policy, utc(2026, 10, 20, 2, 0)) == [
        {"tier": "dispatch", "name": "区一线办统筹办结（每月25日调度会）", "day_of_month": 25, "next": "2026-10-26"}]
    assert dispatch_meetings(policy, utc(2026, 10, 26, 2, 0))[0]["next"] == "2026-11-25"
    assert dispatch_meetings(CountyPolicy(read_policy_file(LONGJIANG), 1), utc(2026, 10, 20, 2, 0)) == []
