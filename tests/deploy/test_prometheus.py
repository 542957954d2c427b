"""Alert rules, their promtool unit tests (one fires when a follower holds events), the scrape
configuration, and every Grafana panel's query: parsed by a real promtool (Debian's `prometheus`
package, installed by deploy/local/install-debian-deps.sh) and naming only exported metrics."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.metrics import ROOT, exported, names_in

PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: run deploy/local/install-debian-deps.sh")


def _promtool(*args, cwd=PROM):
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_alert_rules_are_valid():
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rule_unit_tests_pass_including_a_held_follower():
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())
    fired = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"] if t.get("exp_alerts")}
    assert {"MinqingFollowerParked", "MinqingServiceDown", "MinqingRelayDown", "MinqingFollowerStalled",
            "MinqingFollowerLagging", "MinqingRelayNotConfirming", "MinqingRelayBehindLedger",
            "MinqingNotificationsFailed", "MinqingNotifyBacklog"} <= fired
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_alert_rules_name_only_exported_metrics():
    have = exported()
    rules = [r for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    assert len(rules) >= 8
    for rule in rules:
        unknown = names_in(rule["expr"]) - have
        assert not unknown, f"{rule['alert']} names metrics no process exports: {unknown}"
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_metric_name_reader_reads_promql():
    expr = ('histogram_quantile(0.99, sum by (le) (rate(minqing_routing_sweep_seconds_bucket[10m]))) > 2 '
            'and on() (max by (consumer) (minqing_consumer_parked{consumer="a b"}) > 0)')
    assert names_in(expr) == {"minqing_routing_sweep_seconds_bucket", "minqing_consumer_parked"}
    assert "minqing_consumer_parked" in exported() and "minqing_relay_position" in exported()


@needs_promtool
def test_scrape_configuration_is_valid(tmp_path):
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = _promtool("check", "config", str(tmp_path / "prometheus.yml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    ports = sorted(t.rsplit(":", 1)[1] for job in config["scrape_configs"] for sc in job["static_configs"]
                   for t in sc["targets"])
    # the gateway +0, services +1..+4, relay +5, exporter +6, console +7
    assert ports == ["8000", "8001", "8002", "8003", "8004", "8005", "8006", "8007"]


def _panels():
    for path in sorted(GRAFANA.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["uid"] and board["title"] and board["panels"]
        for panel in board["panels"]:
            yield path.name, panel


def test_dashboards_ship_operations_and_casework():
    titles = {p["title"] for _, p in _panels()}
    assert {"Reports per day", "Overdue cases by township", "Satisfaction trend (满意率, 7 days)",
            "Parked or held events", "Follower lag (events behind the ledger head)", "Notify outbox by status"} <= titles


def test_every_panel_names_only_exported_metrics_or_says_which_it_needs():
    have = exported()
    for board, panel in _panels():
        needed = set(re.findall(r"Needs metric ([a-z_:]+)", panel.get("description", "")))
        assert panel["targets"], f"{board}: {panel['title']} has no query"
        for target in panel["targets"]:
            unknown = names_in(target["expr"]) - have
            assert unknown <= needed, f"{board}: {panel['title']} names unexported {unknown - needed}"
        assert needed.isdisjoint(have), f"{board}: {panel['title']} says it needs {needed & have}, exported now"


@needs_promtool
def test_every_panel_query_parses(tmp_path):
    rules = [{"record": f"dashboard:panel_{i}", "expr": t["expr"]}
             for i, (_, p) in enumerate(_panels()) for t in p["targets"]]
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = _promtool("check", "rules", str(tmp_path / "panels.yml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
