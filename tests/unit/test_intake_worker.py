"""Intake's report entrypoint on a worker made by nameko's `worker_factory`, over an SQLite ledger and
a vault with a fresh key: what a person sees through HTTP (201 with a tracking number and PIN, 401,
422 naming every bad field), without a broker or a container (issue #13)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from nameko.testing.services import worker_factory
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from minqing import access, county, vault as vault_mod
from minqing.consumer import Follower
from minqing.db import make_engine
from minqing.ledger import Ledger
from minqing.service_kit import create_tables
from services.intake.projection import CountyCatalogue
from services.intake.service import IntakeService
from services.intake.tables import metadata_obj

LONGJIANG = Path(__file__).resolve().parents[2] / "deploy" / "counties" / "longjiang.yaml"
REPORT = {"county": "longjiang", "channel": "hotline", "category": "202", "summary": "通往11屯的道路水毁",
          "location": {"township": "黑岗乡", "village": "靠山村", "hamlet": "靠山村11屯"},
          "reporter": {"name": "张三", "phone": "13912340001"}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('intake-worker') / 'ledger.db'}")
    create_tables(engine, metadata_obj, vault_mod.metadata_obj)
    ledger = Ledger(engine)
    county.publish(ledger, county.read_policy_file(LONGJIANG), "test:worker")
    Follower(ledger, CountyCatalogue()).catch_up()          # the catalogue, as the service keeps it
    operator = access.issue_token(engine, "operator", "longjiang")[1]
    yield worker_factory(IntakeService, ledger=ledger, vault=vault_mod.Vault(Fernet.generate_key())), operator, ledger
    engine.dispose()


def _post(body, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Request(EnvironBuilder(path="/api/v1/cases", method="POST", json=body, headers=headers).get_environ())


def test_a_report_is_registered_with_a_tracking_number_and_no_raw_phone_in_the_ledger(world):
    service, operator, ledger = world
    answer = service.report(_post(REPORT, operator))
    body = json.loads(answer.get_data())
    assert answer.status_code == 201 and body["tracking_no"].startswith("LJ-") and len(body["pin"]) == 6
    reported = ledger.read_stream(f"case-{body['case_id']}")[0]
    assert reported.type == "case.reported" and "13912340001" not in json.dumps(reported.data, ensure_ascii=False)


def test_no_token_is_401_and_bad_fields_are_each_named(world):
    service, operator, _ = world
    assert service.report(_post(REPORT)).status_code == 401
    answer = service.report(_post({**REPORT, "channel": "pigeon", "summary": " ", "category": None}, operator))
    fields = json.loads(answer.get_data())["error"]["fields"]
    assert answer.status_code == 422 and {"channel", "summary", "category"} <= set(fields)
