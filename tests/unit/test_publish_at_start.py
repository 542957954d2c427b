"""What `minqing run` publishes from files at start (issue #18.2): never over a version an operator
published since; a file changed since the version it produced is published; an unchanged one is not."""
from pathlib import Path

import pytest

from minqing import county
from minqing.db import make_engine
from minqing.ledger import Ledger
from minqing.shell.runner import START_ACTOR, publish_at_start
from minqing.service_kit import create_tables
from services.assessment import rules

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "deploy" / "counties" / "longjiang.yaml"
RULES = ROOT / "deploy" / "assessment" / "longjiang.yaml"


@pytest.fixture
def ledger(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_tables(engine)
    yield Ledger(engine)
    engine.dispose()


def _at_start(ledger, policy):
    return publish_at_start(ledger, "county longjiang policy", "county-longjiang", "policy.published", policy, FILE,
                            county.publish, "minqing county load")


def _in_force(ledger):
    return [e for e in ledger.read_stream("county-longjiang") if e.type == "policy.published"][-1]


def test_first_start_publishes_then_an_unchanged_file_is_left_alone(ledger):
    policy = county.read_policy_file(FILE)
    assert _at_start(ledger, policy) == "county longjiang policy: v1 published from longjiang.yaml"
    assert _at_start(ledger, policy) == "county longjiang policy: v1 in force, same as longjiang.yaml"
    assert _in_force(ledger).metadata.actor == START_ACTOR


def test_a_file_changed_since_the_version_it_produced_is_published(ledger):
    policy = county.read_policy_file(FILE)
    _at_start(ledger, policy)
    changed = {**policy, "name": "龙江县（新版）"}
    assert _at_start(ledger, changed) == "county longjiang policy: v2 published from longjiang.yaml"


def test_an_operators_version_is_never_replaced_at_start(ledger):
    policy = county.read_policy_file(FILE)
    _at_start(ledger, policy)                                            # v1 from the file
    county.publish(ledger, {**policy, "name": "龙江县（运维）"}, actor="admin:ops")   # v2 with the CLI
    line = _at_start(ledger, policy)
    assert line.startswith("county longjiang policy: v2 in force (published by admin:ops at ")
    assert "+0800); longjiang.yaml differs and is ignored — to apply it: minqing county load " in line
    assert _in_force(ledger).data["version"] == 2
    assert _at_start(ledger, {**policy, "name": "又改了"}).startswith("county longjiang policy: v2 in force")
    assert _in_force(ledger).data["version"] == 2


def test_the_same_rule_holds_for_assessment_rules(ledger):
    document = rules.read_rules_file(RULES)
    args = ("county longjiang assessment rules", "assessment-rules-longjiang", "assessment.rules_published")

    def at_start(doc):
        return publish_at_start(ledger, *args, doc, RULES, rules.publish, "minqing assessment rules load")

    assert at_start(document).endswith("v1 published from longjiang.yaml")
    rules.publish(ledger, rules.validate_rules({**document, "top": 5}), actor="admin:cli")
    assert "v2 in force (published by admin:cli at " in at_start(document)
    assert "to apply it: minqing assessment rules load " in at_start(document)
