"""What changed between two published county policy versions (services/intake/policy_versions.py,
issue #14 §7): items matched by their code or id, plain lists by value, every change with its section,
path, labels and old → new; versions read from the ledger's county stream."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from minqing import county
from minqing.ledger_memory import MemoryLedger
from services.intake import policy_versions

LONGJIANG = county.read_policy_file(Path("deploy/counties/longjiang.yaml"))


def test_a_new_cadre_is_one_addition_and_a_moved_cadre_one_change():
    newer = copy.deepcopy(LONGJIANG)
    newer["cadres"].insert(0, {**newer["cadres"][0], "id": "lj-c099", "name": "新来的干部"})
    newer["cadres"][3]["unit"] = "heigang-centre"
    changes = policy_versions.diff(LONGJIANG, newer)
    assert [(c["change"], c["path"]) for c in changes] == [("added", ["cadres", "lj-c099"]),
                                                          ("changed", ["cadres", newer["cadres"][3]["id"], "unit"])]
    added, moved = changes
    assert added["labels"] == ["cadres", "lj-c099 新来的干部"] and added["new"]["name"] == "新来的干部"
    assert moved["section"] == "cadres" and moved["new"] == "heigang-centre"
    assert moved["old"] == LONGJIANG["cadres"][2]["unit"]


def test_warnings_categories_holidays_and_the_pressure_ladder():
    newer = copy.deepcopy(LONGJIANG)
    newer["escalation"]["warn_before_hours"]["response"] = 2
    newer["escalation"]["pressure"][1]["after_hours"] = 24            # matched by its level
    removed = newer["categories"].pop(1)
    newer["calendar"]["holidays"].append("2026-12-31")
    changes = {(c["change"], ".".join(c["path"])): c for c in policy_versions.diff(LONGJIANG, newer)}
    assert changes[("changed", "escalation.warn_before_hours.response")]["old"] == 4
    assert changes[("changed", "escalation.pressure.supervise.after_hours")]["new"] == 24
    assert changes[("removed", f"categories.{removed['code']}")]["old"] == removed
    assert changes[("added", "calendar.holidays")]["new"] == "2026-12-31"
    assert len(changes) == 4
    assert policy_versions.diff(LONGJIANG, copy.deepcopy(LONGJIANG)) == []


def test_versions_come_from_the_county_stream_and_an_unknown_one_names_its_field():
    ledger = MemoryLedger()
    assert county.publish(ledger, LONGJIANG, "admin:wang") == (1, True)
    newer = copy.deepcopy(LONGJIANG)
    newer["name"] = "龙江县（新）"
    assert county.publish(ledger, newer, "admin:li") == (2, True)
    events = policy_versions.published(ledger, "longjiang")
    listed = [policy_versions.describe(e) for e in events]
    assert [(v["version"], v["actor"]) for v in listed] == [(1, "admin:wang"), (2, "admin:li")]
    compared = policy_versions.compare(events, 1, 2)
    assert compared["sections"] == ["name"] and compared["changes"][0]["new"] == "龙江县（新）"
    assert compared["from"]["version"] == 1 and compared["to"]["digest"] == events[1].data["digest"]
    with pytest.raises(KeyError) as missing:
        policy_versions.compare(events, 1, 3)
    assert missing.value.args[0] == ["to"]
    with pytest.raises(KeyError) as missing:
        policy_versions.compare(events, 0, 3)
    assert missing.value.args[0] == ["from", "to"]
