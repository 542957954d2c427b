"""Idempotent reports through the real stack, on PostgreSQL (the session stack) and on SQLite: a
retry with the same Idempotency-Key — also after the client gave up waiting — gets the first answer
(tracking number and PIN included), never a second case; the same key for another report is refused
by name; Open311's POST requests honours the header too."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from sqlalchemy import text

from minqing.db import make_engine, write_transaction
from minqing.ledger import Ledger
from tests.e2e.test_case_flow import report


@pytest.fixture(params=["stack", "sqlite_stack"])
def any_stack(request):
    return request.getfixturevalue(request.param)


def post(stack, path: str, data: bytes, headers: dict, timeout: float = 30):
    req = urllib.request.Request(stack.base + path, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def post_case(stack, token: str, body: dict, key: str | None, timeout: float = 30):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    status, headers, raw = post(stack, "/api/v1/cases", json.dumps(body, ensure_ascii=False).encode(), headers,
                                timeout)
    return status, headers, json.loads(raw)


def reported_with(stack, marker: str) -> list[str]:
    """The ids of the cases whose summary carries `marker` (read from the ledger itself)."""
    engine = make_engine(stack.env["MINQING_DATABASE_URL"])
    try:
        events = Ledger(engine).read_all(0, 1_000_000, types={"case.reported"})
    finally:
        engine.dispose()
    return [e.data["case_id"] for e in events if marker in e.data["summary"]]


def test_a_retry_gets_the_first_answer_and_never_a_second_case(any_stack):
    token, key, marker = any_stack.issue("operator"), str(uuid.uuid4()), uuid.uuid4().hex[:8]
    body = report(summary=f"幂等测试 {marker}：路灯不亮")
    status, headers, first = post_case(any_stack, token, body, key)
    assert status == 201 and "Idempotent-Replayed" not in headers
    status, headers, again = post_case(any_stack, token, body, key)
    assert status == 201 and again == first and headers["Idempotent-Replayed"] == "true"
    assert again["pin"] == first["pin"] and again["tracking_no"] == first["tracking_no"]
    assert headers["Location"] == f"/api/v1/cases/{first['case_id']}"
    assert reported_with(any_stack, marker) == [first["case_id"]]
    # the same key for another report: refused by name, nothing written
    status, _, refused = post_case(any_stack, token, {**body, "summary": f"另一件事 {marker}"}, key)
    assert status == 422 and "Idempotency-Key" in refused["error"]["fields"]
    # the same key from another principal is theirs: a new case
    status, _, theirs = post_case(any_stack, any_stack.issue("operator"), body, key)
    assert status == 201 and theirs["case_id"] != first["case_id"]
    # without a key, a repeat is a new report (merged as a duplicate, but registered)
    status, _, plain = post_case(any_stack, token, body, None)
    assert status == 201 and plain["case_id"] not in (first["case_id"], theirs["case_id"])
    status, _, bad = post_case(any_stack, token, body, "no spaces allowed")
    assert status == 422 and "Idempotency-Key" in bad["error"]["fields"]


@contextlib.contextmanager
def ledger_held(stack):
    """Hold the ledger's append lock from outside the stack, so registrations wait meanwhile."""
    engine = make_engine(stack.env["MINQING_DATABASE_URL"])
    try:
        with write_transaction(engine) as conn:     # SQLite: BEGIN IMMEDIATE holds the write lock
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT position FROM ledger_head WHERE id = 1 FOR UPDATE"))
            yield
    finally:
        engine.dispose()


def test_a_retry_after_a_client_timeout_gets_the_first_answer(any_stack):
    token, key, marker = any_stack.issue("operator"), str(uuid.uuid4()), uuid.uuid4().hex[:8]
    body = report(summary=f"超时重试 {marker}：水井干涸")
    with ledger_held(any_stack):
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            post_case(any_stack, token, body, key, timeout=1.5)
        # the client retries at once, while its first request is still waiting inside the stack
        answers = []
        retry = threading.Thread(target=lambda: answers.append(post_case(any_stack, token, body, key)))
        retry.start()
        time.sleep(1.0)
    retry.join(30)
    status, _, answer = answers[0]      # the first answer or this one: whichever got the lock first
    assert status == 201, answer
    assert reported_with(any_stack, marker) == [answer["case_id"]]
    status, _, later = post_case(any_stack, token, body, key)
    assert status == 201 and later == answer


def test_open311_post_requests_honours_the_key(any_stack):
    api_key, key, marker = any_stack.issue("integrator"), str(uuid.uuid4()), uuid.uuid4().hex[:8]
    form = {"api_key": api_key, "jurisdiction_id": "longjiang", "service_code": "202",
            "address_string": "靠山村11屯村口", "attribute[township]": "heigang", "attribute[village]": "heigang.kaoshan",
            "description": f"Open311 幂等 {marker}：村口道路被水冲毁"}
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": key}
    status, _, first = post(any_stack, "/open311/v2/requests.json", urllib.parse.urlencode(form).encode(), headers)
    assert status == 201, first
    status, replay_headers, again = post(any_stack, "/open311/v2/requests.json", urllib.parse.urlencode(form).encode(),
                                         headers)
    assert status == 201 and json.loads(again) == json.loads(first)
    assert replay_headers["Idempotent-Replayed"] == "true"
    assert reported_with(any_stack, marker) == [json.loads(first)[0]["service_request_id"]]
    status, _, refused = post(any_stack, "/open311/v2/requests.json",
                              urllib.parse.urlencode({**form, "description": "另一件事"}).encode(), headers)
    assert status == 400 and b"Idempotency-Key" in refused
