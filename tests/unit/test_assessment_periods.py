"""Assessment periods: months, half-years and years in the county's local time."""
import pytest

from services.assessment.scorecards import PeriodError, months_of, period_end


def test_period_codes():
    assert months_of("2026-03") == ["2026-03"]
    assert months_of("2026-H1") == [f"2026-{m:02d}" for m in range(1, 7)]
    assert len(months_of("2026")) == 12


@pytest.mark.parametrize("bad", ["", "March", "2026-13", "2026-H3", "0000", "0000-01", "1999", "20261"])
def test_bad_periods_are_refused(bad):
    with pytest.raises(PeriodError):
        months_of(bad)


def test_a_period_ends_at_local_midnight_after_its_last_day():
    assert period_end("2026-12", "Asia/Shanghai") == "2026-12-31T16:00:00.000000Z"
    assert period_end("2026-H1", "Asia/Shanghai") == "2026-06-30T16:00:00.000000Z"


# Issue #12 §11a / #18 §1b: days and periods computed at fixed instants, in the county's zone, never
# from the machine's date. Each instant is one where the UTC date and the local date differ, or a day
# people would not expect to work.
from datetime import date, datetime, timezone  # noqa: E402

from services.assessment.periods import current_period, local_day, visit_day_error  # noqa: E402

TZ = "Asia/Shanghai"
MONTH_END = datetime(2026, 11, 30, 16, 30, tzinfo=timezone.utc)      # 00:30 on 1 December in China
NEW_YEAR = datetime(2026, 12, 31, 17, 0, tzinfo=timezone.utc)        # 01:00 on 1 January 2027
HOLIDAY = datetime(2026, 10, 1, 2, 0, tzinfo=timezone.utc)           # 10:00 on National Day
SMALL_HOURS = datetime(2026, 12, 1, 19, 0, tzinfo=timezone.utc)      # 03:00 on 2 December, quiet hours


@pytest.mark.parametrize("now, today, period", [
    (MONTH_END, "2026-12-01", "2026-12"),
    (NEW_YEAR, "2027-01-01", "2027-01"),
    (HOLIDAY, "2026-10-01", "2026-10"),
    (SMALL_HOURS, "2026-12-02", "2026-12"),
])
def test_the_county_lives_by_its_local_day_and_month(now, today, period):
    assert local_day(now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), TZ) == today
    assert current_period(now, TZ) == period


@pytest.mark.parametrize("now", [MONTH_END, NEW_YEAR, HOLIDAY, SMALL_HOURS])
def test_a_visit_for_the_local_today_is_accepted_and_tomorrow_refused(now):
    today = date.fromisoformat(local_day(now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), TZ))
    assert visit_day_error(today, now, TZ) is None                          # main refused this before 08:00
    assert visit_day_error(today.replace(day=today.day - 1) if today.day > 1 else today, now, TZ) is None
    tomorrow = date.fromordinal(today.toordinal() + 1)
    assert "not in the future" in visit_day_error(tomorrow, now, TZ)
    assert visit_day_error(date.fromordinal(today.toordinal() - 367), now, TZ) is not None


def test_the_visit_window_reaches_back_a_year_from_the_local_day():
    assert visit_day_error(date(2025, 12, 1), MONTH_END, TZ) is None        # 365 days before 1 Dec 2026
    assert visit_day_error(date(2025, 11, 29), MONTH_END, TZ) is not None


@pytest.mark.parametrize("instant, tz, month", [
    ("2026-03-31T15:59:59.999999Z", "Asia/Shanghai", "2026-03"),    # 23:59:59 local, the last of March
    ("2026-03-31T16:00:00.000000Z", "Asia/Shanghai", "2026-04"),    # local midnight: April
    ("2026-12-31T16:00:00.000000Z", "Asia/Shanghai", "2027-01"),    # and a new year
    ("2026-01-01T04:59:59.000000Z", "America/New_York", "2025-12"),  # west of UTC: still last month
    ("2026-04-01T03:59:59.999999Z", "America/New_York", "2026-03"),  # daylight saving time
    ("2026-04-01T04:00:00.000000Z", "America/New_York", "2026-04"),
    ("2026-02-28T18:15:00.000000Z", "Asia/Kathmandu", "2026-03"),   # a quarter-hour zone
    ("2026-03-31T16:00:00+00:00", "Asia/Shanghai", "2026-04"),      # another form: parsed
])
def test_a_facts_month_is_its_local_month_without_parsing_the_instant(instant, tz, month):
    """local_month (what facts are dated by, fast for rebuilds) says what local_day says."""
    from services.assessment.periods import local_month
    assert local_month(instant, tz) == month == local_day(instant, tz)[:7]
