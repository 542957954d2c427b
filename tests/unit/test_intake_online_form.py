"""The 民生在线 door's input rules (services/intake/online.py, issue #14 §8): what a resident may send,
every bad field named at once — the county catalogue's misses too — and the report it becomes (the
`online` channel; a phone only when given, no name)."""
from __future__ import annotations

from pathlib import Path

import pytest
from marshmallow import ValidationError

from minqing.county import CountyPolicy, read_policy_file
from services.intake.online import OnlineReportIn, as_report

HEPING = CountyPolicy(read_policy_file(Path("tests/fixtures/counties/heping.yaml")), 1)


def test_every_bad_field_is_named_at_once():
    with pytest.raises(ValidationError) as bad:
        OnlineReportIn(policy=HEPING).load({"category": "no-such", "township": "hp-town", "village": "nowhere",
                                            "summary": " ", "phone": "12345", "name": "张三"})
    assert set(bad.value.messages) == {"category", "village", "summary", "phone", "name"}, bad.value.messages


def test_a_good_form_becomes_an_online_report_with_the_phone_only_when_given():
    form = OnlineReportIn(policy=HEPING).load({"category": "203", "township": "hp-town", "village": "hp-town.east",
                                               "summary": "桥面塌陷"})
    report = as_report("heping", form)
    assert report["channel"] == "online" and report["reporter"] is None
    assert report["location"] == {"township": "hp-town", "village": "hp-town.east", "hamlet": None}
    with_phone = as_report("heping", {**form, "phone": " 13800138000 "})
    assert with_phone["reporter"] == {"name": "", "phone": "13800138000"}
