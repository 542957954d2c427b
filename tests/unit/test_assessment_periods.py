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
