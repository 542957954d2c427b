"""County policy files: the demo county loads; a broken file is refused with each error's path."""
import copy
from pathlib import Path

import pytest

from minqing.county import CountyPolicy, PolicyError, read_policy_file, validate_policy

LONGJIANG = Path(__file__).resolve().parents[2] / "deploy" / "counties" / "longjiang.yaml"


@pytest.fixture(scope="module")
def policy():
    return read_policy_file(LONGJIANG)


def test_longjiang_has_the_seed_000_places(policy):
    """Seed 000: "在龙江镇、山泉镇、七棵树镇和黑岗乡深入开展试点工作" and "黑岗乡靠山村", "山泉镇平安村"."""
    names = {t["name"] for t in policy["townships"]}
    assert names == {"龙江镇", "山泉镇", "七棵树镇", "黑岗乡"}
    county = CountyPolicy(policy, 1)
    assert county.resolve_place("黑岗乡", "靠山村", "靠山村11屯").hamlet == "heigang.kaoshan.11"
    assert county.resolve_place("山泉镇", "平安村", None).village == "shanquan.pingan"


def test_longjiang_has_the_four_tier_network(policy):
    """Seed 000: "构建县乡村屯四级代理代办网络和服务体系"."""
    assert [t["code"] for t in policy["tiers"]] == ["hamlet", "village", "township", "department"]


def test_places_are_checked_against_their_parents(policy):
    county = CountyPolicy(policy, 1)
    with pytest.raises(KeyError) as info:
        county.resolve_place("龙江镇", "靠山村", None)     # 靠山村 is in 黑岗乡
    assert info.value.args[0] == "village"


def test_broken_references_are_reported_with_their_paths(policy):
    broken = copy.deepcopy(policy)
    broken["cadres"][0]["unit"] = "no-such-unit"
    broken["units"][1]["covers"] = ["atlantis"]
    broken["categories"][0]["department"] = "heigang-centre"
    with pytest.raises(PolicyError) as info:
        validate_policy(broken)
    # cadre 0 was the only cadre of unit 0, which now has nobody
    assert set(info.value.errors) == {"cadres.0.unit", "units.1.covers.0", "categories.0.department", "units.0.code"}


def test_field_errors_are_reported_with_their_paths(policy):
    broken = copy.deepcopy(policy)
    broken["categories"][2]["time_limits"]["village"] = "five"
    broken["townships"][0]["villages"][0]["hamlets"][0]["code"] = "bad code!"
    del broken["tracking_prefix"]
    with pytest.raises(PolicyError) as info:
        validate_policy(broken)
    assert set(info.value.errors) == {"categories.2.time_limits.village.value",
                                      "townships.0.villages.0.hamlets.0.code", "tracking_prefix"}


def test_a_policy_file_obeys_the_doors_text_rule(tmp_path):
    """Issue #12: CLI input that becomes an event (`minqing county load`) is held to the same rule:
    a YAML escape can make a NUL or a lone surrogate; the file is refused naming the path."""
    text = LONGJIANG.read_text(encoding="utf-8")
    bad = tmp_path / "longjiang.yaml"
    for escape in ('"\\0"', '"\\ud800"', '"\\e"'):
        bad.write_text(text.replace("\nname: ", f"\nname: {escape}\nold_name: ", 1), encoding="utf-8")
        with pytest.raises(PolicyError) as caught:
            read_policy_file(bad)
        assert "name" in caught.value.errors, caught.value.errors
