"""The calendar filled from a maintained source (issue #18.3): `minqing calendar build`."""
from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import yaml

from minqing import holidays
from minqing.shell import cli
from minqing.calendar import WorkCalendar


def test_the_packaged_2026_arrangement_equals_the_hand_kept_file():
    kept = yaml.safe_load(Path("deploy/calendars/cn-2026.yaml").read_text(encoding="utf-8"))
    built = holidays.year_calendar(2026)
    assert built["covers"] == kept["covers"] == [2026]
    assert built["holidays"] == sorted(kept["holidays"])
    assert built["workdays"] == sorted(kept["workdays"])
    assert yaml.safe_load(holidays.render_yaml(2026)) == {**kept, "holidays": sorted(kept["holidays"]),
                                                         "workdays": sorted(kept["workdays"])}


def test_a_year_the_package_does_not_know_is_refused_by_name_not_written_as_weekends_only(capsys):
    unknown = max(holidays.known_years()) + 1
    with pytest.raises(holidays.UnknownYear) as err:
        holidays.year_calendar(unknown)
    assert str(unknown) in str(err.value)
    assert cli.main(["calendar", "build", str(unknown)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and f"no holiday arrangement for {unknown}" in captured.err


def test_the_build_command_writes_the_file(tmp_path, capsys):
    out = tmp_path / "cn-2026.yaml"
    assert cli.main(["calendar", "build", "2026", "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["workdays"][0] == date(2026, 1, 4)


def test_a_deadline_beyond_the_calendar_is_warned_about():
    cal = WorkCalendar("Asia/Shanghai", covers=frozenset({2026}))
    assert cal.warning(None) is None
    assert cal.warning(datetime(2026, 12, 31, 15, 59, tzinfo=timezone.utc)) is None      # 23:59 on 31 Dec, local
    warned = cal.warning(datetime(2026, 12, 31, 16, 0, tzinfo=timezone.utc))             # 00:00 on 1 Jan 2027
    assert warned["code"] == "calendar_ends" and warned["last_year"] == 2026 and warned["latest_due_year"] == 2027
    assert "minqing calendar build 2027" in warned["message"]
    assert WorkCalendar("Asia/Shanghai").warning(datetime(2026, 5, 1, tzinfo=timezone.utc))["last_year"] is None
