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


def test_the_shipped_counties_warn_when_open_deadlines_run_into_2027():
    """chinesecalendar 1.11.0 has no 2027 (the State Council publishes each autumn): the sample counties'
    calendars end in 2026. An open case whose deadline falls in January 2027 (the Spring Festival is
    then unknown) makes routing's /health check and the worklist warn (`calendar_health` and
    `calendar_check`, what both read), never fail; a closed one or a 2026 deadline does not."""
    from sqlalchemy import create_engine

    from minqing import county
    from services.routing.tables import cases_table, metadata_obj
    from services.routing.worklist import calendar_check, calendar_health

    assert 2027 not in holidays.known_years()
    policies = {name: county.CountyPolicy(county.read_policy_file(Path(f"deploy/counties/{name}.yaml")), 1)
                for name in ("longjiang", "luyang", "ziyang")}
    assert all(WorkCalendar.from_policy(p.doc).covers == frozenset({2026}) for p in policies.values())
    engine = create_engine("sqlite://")
    metadata_obj.create_all(engine)
    row = dict(county="longjiang", status="accepted", overdue=False, version=2)
    with engine.begin() as conn:
        conn.execute(cases_table.insert(), [
            {**row, "case_id": "a", "is_open": True, "resolution_due": "2026-12-31T08:00:00.000000Z"},
            {**row, "case_id": "b", "is_open": False, "resolution_due": "2027-02-20T08:00:00.000000Z"}])
        assert calendar_check(conn, "longjiang", policies["longjiang"]) is None
        conn.execute(cases_table.insert().values(**row, case_id="c", is_open=True,
                                                 resolution_due="2027-01-08T02:00:00.000000Z"))
        warned = calendar_check(conn, "longjiang", policies["longjiang"])
    assert warned["code"] == "calendar_ends" and (warned["last_year"], warned["latest_due_year"]) == (2026, 2027)
    assert "minqing calendar build 2027" in warned["message"]
    with engine.connect() as conn:
        conn.execute(metadata_obj.tables["routing_policies"].insert().values(
            county="longjiang", version=1, policy="{}"))
        health = calendar_health(conn, lambda _conn, name: policies[name])
    assert health["status"] == "warn" and set(health["counties"]) == {"longjiang"}
