"""Routing's entrypoints called on a worker made by nameko's `worker_factory` (no broker, no
container), over an SQLite ledger in a temporary file: the RPC entrypoints go through the access
decision (issue #13), and the HTTP entrypoint authenticates from the request's header."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from nameko.testing.services import worker_factory
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from minqing import access, county
from minqing.consumer import Follower
from minqing.db import make_engine
from minqing.ledger import Ledger, Metadata, NewEvent
from minqing.service_kit import create_tables
from services.routing.projection import RoutingProjection
from services.routing.service import RoutingService
from services.routing.tables import metadata_obj

LONGJIANG = Path(__file__).resolve().parents[2] / "deploy" / "counties" / "longjiang.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('routing-worker') / 'ledger.db'}")
    create_tables(engine, metadata_obj)
    ledger = Ledger(engine)
    county.publish(ledger, county.read_policy_file(LONGJIANG), "test:worker")
    reported = {"case_id": "w1", "county": "longjiang", "tracking_no": "LJ-20261123-0009", "category": "201",
                "channel": "hotline", "kind": "help", "urgency": "normal", "summary": "路面塌陷",
                "location": {"township": "heigang", "village": "heigang.kaoshan", "hamlet": None},
                "reporter": {"subject": None, "name_masked": "", "phone_masked": ""},
                "reported_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")}
    ledger.append("case-w1", [NewEvent("case.reported", reported, Metadata("test:worker", "longjiang"))])
    Follower(ledger, RoutingProjection(ledger)).catch_up()          # assigns it, as the service would
    tokens = {"village": access.issue_token(engine, "cadre", "longjiang", unit="heigang.kaoshan-station", cadre="lj-c002")[1],
              "stranger": access.issue_token(engine, "cadre", "longjiang", unit="shanquan.pingan-station", cadre="lj-c003")[1],
              "operator": access.issue_token(engine, "operator", "longjiang")[1]}
    yield worker_factory(RoutingService, ledger=ledger), tokens
    engine.dispose()


def test_rpc_takes_a_token_never_a_principal(world):
    service, tokens = world
    forged = {"role": "cadre", "county": "longjiang", "unit": "heigang.kaoshan-station", "cadre": "lj-c002"}
    assert service.act(forged, "w1", "accept", {})["code"] == 401
    assert service.act(None, "w1", "accept", {})["code"] == 401
    assert service.explain_case("mq_000000000000.nothing", "w1")["code"] == 401
    assert service.act(tokens["operator"], "w1", "accept", {})["code"] == 403        # the role rule of case.accept
    assert service.act(tokens["stranger"], "w1", "accept", {})["code"] == 404       # outside the unit's scope
    assert service.explain_case(tokens["stranger"], "w1")["code"] == 404
    assert service.act(tokens["village"], "w1", "fly", {})["code"] == 422


def test_rpc_acts_and_explains_for_the_holding_cadre(world):
    service, tokens = world
    done = service.act(tokens["village"], "w1", "accept", {})
    assert done["code"] == 200 and done["events"] == ["case.accepted"]
    assert service.act(tokens["village"], "w1", "accept", {})["error"]["code"] == "already_accepted"
    why = service.explain_case(tokens["village"], "w1")
    assert why["code"] == 200 and [d["type"] for d in why["decisions"]][:2] == ["case.assigned", "case.accepted"]


def test_the_http_entrypoint_authenticates_from_the_header(world):
    service, tokens = world
    def get(path, token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return Request(EnvironBuilder(path=path, headers=headers).get_environ())
    assert service.get_worklist(get("/api/v1/worklist")).status_code == 401
    answer = service.get_worklist(get("/api/v1/worklist", tokens["village"]))
    assert answer.status_code == 200
    assert "w1" in {c["case_id"] for c in json.loads(answer.get_data())["cases"]}
