"""`day_kind`: a category's time limits count working days unless the county says calendar (issue #13)."""
from __future__ import annotations

from pathlib import Path

import yaml

from minqing.county import validate_policy

ROOT = Path(__file__).resolve().parents[2]
COUNTY_FILES = sorted((ROOT / "deploy" / "counties").glob("*.yaml")) + sorted((ROOT / "tests" / "fixtures" / "counties").glob("*.yaml"))


def _raw(name: str = "longjiang") -> dict:
    from minqing.county import _include_calendars
    path = ROOT / "deploy" / "counties" / f"{name}.yaml"
    return _include_calendars(yaml.safe_load(path.read_text(encoding="utf-8")), path.parent)


def test_a_category_without_day_kind_counts_working_days():
    """deploy/counties/longjiang.yaml: "time_limits are days per tier, working days unless day_kind says
    calendar" (the seeds' 限时办结 name a number of days without saying which; the county files decide)."""
    raw = _raw()
    for category in raw["categories"]:
        category.pop("day_kind", None)
    assert {c["day_kind"] for c in validate_policy(raw)["categories"]} == {"working"}


def test_calendar_days_are_said_explicitly():
    raw = _raw()
    raw["categories"][0]["day_kind"] = "calendar"
    assert validate_policy(raw)["categories"][0]["day_kind"] == "calendar"


def test_every_sample_county_says_its_day_kind():
    """The sample counties state day_kind for every category, so no file depends on the default."""
    for path in COUNTY_FILES:
        categories = yaml.safe_load(path.read_text(encoding="utf-8"))["categories"]
        assert all(c.get("day_kind") in ("working", "calendar") for c in categories), path.name
