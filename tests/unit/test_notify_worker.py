"""Notify's HTTP entrypoints on a worker made by nameko's `worker_factory`, over an SQLite ledger and a
vault with a fresh key (issue #13): the integrator's event feed and webhook subscriptions, and the
operator's 回访 entry, as a person or a system sees them through HTTP — without a broker or a
container. The background Worker (outbox, 回访 timer, webhooks) is left to nameko's default stand-in:
no entrypoint here uses it."""
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
from services.notify.rules import NotificationRules
from services.notify.service import NotifyService
from services.notify.tables import metadata_obj

LONGJIANG = Path(__file__).resolve().parents[2] / "deploy" / "counties" / "longjiang.yaml"
PUBLIC_HOOK = "https://93.184.216.34/minqing-hook"      # a literal public address: no DNS is asked


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('notify-worker') / 'ledger.db'}")
    create_tables(engine, metadata_obj, vault_mod.metadata_obj)
    ledger = Ledger(engine)
    county.publish(ledger, county.read_policy_file(LONGJIANG), "test:worker")
    Follower(ledger, NotificationRules(ledger)).catch_up()      # the policy in force, as the service keeps it
    tokens = {role: access.issue_token(engine, role, "longjiang")[1] for role in ("integrator", "operator")}
    service = worker_factory(NotifyService, ledger=ledger, vault=vault_mod.Vault(Fernet.generate_key()))
    yield service, tokens
    engine.dispose()


def _request(method, path, token=None, body=None, query=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Request(EnvironBuilder(path=path, method=method, json=body, headers=headers,
                                  query_string=query).get_environ())


def _body(answer):
    return json.loads(answer.get_data() or b"null")


def test_the_feed_answers_the_integrator_with_cloudevents_of_its_county_only(world):
    service, tokens = world
    answer = service.events(_request("GET", "/api/v1/events", tokens["integrator"]))
    body = _body(answer)
    assert answer.status_code == 200 and body["county"] == "longjiang" and body["events"]
    assert all(e["specversion"] == "1.0" for e in body["events"]) and body["next_after"] >= 1
    assert service.events(_request("GET", "/api/v1/events", tokens["operator"])).status_code == 403
    assert service.events(_request("GET", "/api/v1/events")).status_code == 401
    bad = service.events(_request("GET", "/api/v1/events", tokens["integrator"], query={"after": "-1", "limit": "0"}))
    assert bad.status_code == 422 and {"after", "limit"} <= set(_body(bad)["error"]["fields"])


def test_a_webhook_is_registered_listed_and_removed_and_its_secret_shown_once(world):
    service, tokens = world
    made = service.subscribe(_request("POST", "/api/v1/subscriptions", tokens["integrator"],
                                      body={"url": PUBLIC_HOOK, "types": ["case.*"]}))
    sub = _body(made)
    assert made.status_code == 201 and sub["secret"] and sub["status"] == "active"
    listed = _body(service.list_subscriptions(_request("GET", "/api/v1/subscriptions", tokens["integrator"])))
    assert [s["id"] for s in listed["subscriptions"]] == [sub["id"]] and "secret" not in listed["subscriptions"][0]
    path = f"/api/v1/subscriptions/{sub['id']}"
    assert service.unsubscribe(_request("DELETE", path, tokens["integrator"]), sub_id=sub["id"]).status_code == 204
    assert service.get_subscription(_request("GET", path, tokens["integrator"]), sub_id=sub["id"]).status_code == 404


def test_a_webhook_to_a_private_address_or_with_bad_fields_is_refused_by_name(world):
    service, tokens = world
    private = service.subscribe(_request("POST", "/api/v1/subscriptions", tokens["integrator"],
                                         body={"url": "http://127.0.0.1:9/hook"}))
    assert private.status_code == 422 and "url" in _body(private)["error"]["fields"]
    bad = service.subscribe(_request("POST", "/api/v1/subscriptions", tokens["integrator"],
                                     body={"url": "x", "types": [], "from_start": "soon"}))
    assert bad.status_code == 422 and {"url", "types", "from_start"} <= set(_body(bad)["error"]["fields"])
    assert service.subscribe(_request("POST", "/api/v1/subscriptions", tokens["operator"],
                                      body={"url": PUBLIC_HOOK})).status_code == 403


def test_a_follow_up_for_an_unknown_case_is_404_and_a_bad_rating_is_named(world):
    service, tokens = world
    path = "/api/v1/cases/no-such-case/follow-up"
    unknown = service.follow_up(_request("POST", path, tokens["operator"], body={"rating": "1"}), case_id="no-such-case")
    assert unknown.status_code == 404
    bad = service.follow_up(_request("POST", path, tokens["operator"], body={"rating": "5", "via": "pigeon"}),
                            case_id="no-such-case")
    assert bad.status_code == 422 and {"rating", "via"} <= set(_body(bad)["error"]["fields"])
