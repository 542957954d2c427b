"""Assessment's visit entrypoint on a worker made by nameko's `worker_factory`, over an SQLite ledger
(issue #13): a field visit (民情下访) by the token's cadre is recorded once, the same visit again is the
same event, other figures for it are a 409, and a bad day and an unknown hamlet are named together."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from nameko.testing.services import worker_factory
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from minqing import access, county
from minqing.consumer import Follower
from minqing.db import make_engine
from minqing.ledger import Ledger
from minqing.service_kit import create_tables
from services.assessment.projection import AssessmentFacts
from services.assessment.service import AssessmentService
from services.assessment.tables import metadata_obj

LONGJIANG = Path(__file__).resolve().parents[2] / "deploy" / "counties" / "longjiang.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('assessment-worker') / 'ledger.db'}")
    create_tables(engine, metadata_obj)
    ledger = Ledger(engine)
    county.publish(ledger, county.read_policy_file(LONGJIANG), "test:worker")
    Follower(ledger, AssessmentFacts()).catch_up()           # the county's places and zone, as the service keeps them
    cadre = access.issue_token(engine, "cadre", "longjiang", unit="heigang.kaoshan-station", cadre="lj-c002")[1]
    yield worker_factory(AssessmentService, ledger=ledger), cadre
    engine.dispose()


def _post(body, token):
    return Request(EnvironBuilder(path="/api/v1/visits", method="POST", json=body,
                                  headers={"Authorization": f"Bearer {token}"}).get_environ())


def test_a_visit_is_recorded_once_and_bad_fields_are_named(world):
    service, cadre = world
    # a day well inside the window, whatever the hour: two days ago in the county's zone
    day = (datetime.now(timezone.utc).astimezone(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=2)).isoformat()
    visit = {"day": day, "hamlet": "heigang.kaoshan.11", "households": 12}
    first = service.log_visit(_post(visit, cadre))
    again = service.log_visit(_post(visit, cadre))
    assert first.status_code == again.status_code == 201
    assert json.loads(first.get_data())["event_id"] == json.loads(again.get_data())["event_id"]
    assert service.log_visit(_post({**visit, "households": 13}, cadre)).status_code == 409
    future = (datetime.now(timezone.utc) + timedelta(days=3)).date().isoformat()
    bad = service.log_visit(_post({"day": future, "hamlet": "nowhere", "households": 1}, cadre))
    assert bad.status_code == 422 and set(json.loads(bad.get_data())["error"]["fields"]) == {"day", "hamlet"}
