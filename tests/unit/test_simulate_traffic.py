"""The simulator's traffic model: seeded and reproducible, every channel of the county's policy, the
seed's daily volume (issue #17.2)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from minqing.contract import CHANNELS
from minqing.shell.simulate.traffic import CHANNEL_MIX, PER_DAY, Traffic

POLICY = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy/counties/longjiang.yaml").read_text())


def draw(seed: int, n: int = 400):
    traffic = Traffic(seed, POLICY, POLICY["cadres"])
    return [vars(traffic.matter()) for _ in range(n)], [traffic.volume(d % 7, d % 2) for d in range(60)]


def test_the_same_seed_draws_the_same_traffic_and_another_seed_does_not():
    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_every_channel_is_a_policy_channel_and_all_of_them_show():
    matters, _ = draw(1, 2000)
    seen = Counter(m["channel"] for m in matters)
    assert set(CHANNEL_MIX) <= set(CHANNELS)
    assert set(seen) == set(CHANNEL_MIX)
    assert seen.most_common(1)[0][0] == "proxy_agent"          # seed 000: the 代办员 carry most matters
    assert all(m["phone"] is None for m in matters if m["channel"] == "suggestion_box")
    assert all(m["agent"] for m in matters if m["channel"] == "proxy_agent")
    categories = {c["code"] for c in POLICY["categories"]}
    assert {m["category"] for m in matters} <= categories


def test_the_daily_volume_is_the_seeds():
    traffic = Traffic(3, POLICY, POLICY["cadres"])
    days = 700
    total = sum(traffic.volume(d % 7, s) for d in range(days) for s in (0, 1))
    assert abs(total / days - PER_DAY) < 2.0


def test_field_visits_follow_the_quota_by_level():
    traffic = Traffic(5, POLICY, POLICY["cadres"])
    village = next(c for c in POLICY["cadres"] if c["id"] == "lj-c002")
    department = next(c for c in POLICY["cadres"] if c["id"] == "lj-c010")
    traffic.diligence = {c["id"]: 1.0 for c in POLICY["cadres"]}
    v = sum(traffic.visits(village, "village") is not None for _ in range(5000))
    d = sum(traffic.visits(department, "department") is not None for _ in range(5000))
    assert 800 < v < 1200 and 120 < d < 300          # 50 and 10 days of 250 working days
