"""Notify on the real stack (issue #6, done-when): a case is reported, assigned, warned, resolved and
followed up by an inbound SMS reply; the local SMTP and HTTP servers receive exactly the expected
messages, once each, although the test redelivers every event of the case and restarts notify
mid-run. A webhook subscriber that answers 500 for a while, then recovers, receives every event of
the case in order with valid signatures."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import kombu
import pytest
from sqlalchemy import create_engine

from minqing import cloudevents
from minqing.ledger import Ledger
from tests.notify_servers import HttpRecorder
from tests.support import fresh_phone

CADRE_EMAIL = "village.cadre@heping.example"
SUPERVISOR_EMAIL = "town.supervisor@heping.example"


def cli(stack, *args) -> str:
    out = subprocess.run([sys.executable, "-m", "minqing.shell.cli", *args], env=stack.env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def case_events(stack, case_id):
    engine = create_engine(stack.env["MINQING_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    try:
        return Ledger(engine).read_stream(f"case-{case_id}")
    finally:
        engine.dispose()


def texts_to(gateway, phone):
    return [b["text"] for b in gateway.json_bodies("/sms") if b["to"] == phone]


def mails_about(smtp, tracking_no):
    return [m for m in smtp.messages if tracking_no in m.get_content()]


def redeliver(stack, events):
    """Publish every event of the case to the broker again, as a relay restart would."""
    with kombu.Connection(stack.env["MINQING_AMQP_URI"]) as conn:
        producer = conn.Producer(serializer="cloudevents")
        exchange = kombu.Exchange(cloudevents.EXCHANGE, type="topic", durable=True)
        for event in events:
            producer.publish(cloudevents.to_cloudevent(event), exchange=exchange,
                             routing_key=cloudevents.routing_key(event), delivery_mode=2)


def restart_notify(stack):
    """SIGTERM notify mid-run; `minqing run` starts it again."""
    old = stack.pid("notify")
    os.kill(old, signal.SIGTERM)
    wait_for(lambda: stack.pid("notify") != old, 60, "notify to be restarted")

    def healthy():
        code, body = stack.request("GET", "/health", token=None)
        return isinstance(body, dict) and body.get("services", {}).get("notify", {}).get("status") == "ok"
    wait_for(healthy, 60, "notify to be healthy again")


@pytest.fixture(scope="module")
def subscriber():
    server = HttpRecorder()
    yield server
    server.close()


def test_case_notifications_once_each_through_redelivery_and_restart(stack, sms_gateway, smtp_server, subscriber):
    cli(stack, "notify", "contact", "set", "--county", "heping", "--cadre", "hp-c001", "--email", CADRE_EMAIL)
    cli(stack, "notify", "contact", "set", "--county", "heping", "--supervisor", "hp-town", "--email", SUPERVISOR_EMAIL)
    secret = cli(stack, "channel", "secret", "sms", "--county", "heping").strip().splitlines()[-1]
    integrator = stack.issue("integrator", "heping")
    code, sub = stack.request("POST", "/api/v1/subscriptions", {"url": subscriber.url + "/hook", "types": ["case.*"]},
                              token=integrator)
    assert code == 201, sub
    subscriber.failing = True                       # the subscriber is down from the start

    phone = fresh_phone()
    operator = stack.issue("operator", "heping")
    code, made = stack.request("POST", "/api/v1/cases", {
        "county": "heping", "channel": "hotline", "category": "203", "summary": "东村桥面塌陷，急需抢修",
        "location": {"township": "hp-town", "village": "hp-town.east"},
        "reporter": {"name": "测试居民", "phone": phone}}, token=operator)
    assert code == 201, made
    case_id, tracking_no = made["case_id"], made["tracking_no"]

    wait_for(lambda: any(tracking_no in t for t in texts_to(sms_gateway, phone)), what="the receipt SMS")
    # issue #18.6: the receipt tells the PIN the resident needs to track the case (sealed in the vault
    # at registration, filled in only at send time; never in an event or the outbox)
    receipt = next(t for t in texts_to(sms_gateway, phone) if tracking_no in t)
    assert made["pin"] in receipt, receipt
    wait_for(lambda: len(mails_about(smtp_server, tracking_no)) >= 2, what="the assignment and warning e-mails")

    restart_notify(stack)
    redeliver(stack, case_events(stack, case_id))

    cadre = stack.issue("cadre", "heping", unit="hp-town.east-station", cadre="hp-c001")
    code, body = stack.request("POST", f"/api/v1/cases/{case_id}/accept", {}, token=cadre)
    assert code == 200, body
    code, body = stack.request("POST", f"/api/v1/cases/{case_id}/resolve", {"resolution": "已组织抢修，桥面恢复通行"},
                               token=cadre)
    assert code == 200, body

    wait_for(lambda: any("回访" in t for t in texts_to(sms_gateway, phone)), what="the follow-up SMS")
    assert "case.delivered" in [e.type for e in case_events(stack, case_id)]

    reply = json.dumps({"msg_id": f"r-{case_id[:8]}", "from": phone, "text": "1",
                        "timestamp": int(time.time())}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), reply, hashlib.sha256).hexdigest()
    code, answer = stack.request("POST", "/api/v1/channels/sms/heping", raw=reply,
                                 headers={"X-Minqing-Signature": signature}, token=None)
    assert code == 200 and answer["outcome"] == "rated" and answer["case_id"] == case_id, answer
    code, again = stack.request("POST", "/api/v1/channels/sms/heping", raw=reply,
                                headers={"X-Minqing-Signature": signature}, token=None)
    assert code == 200 and again["outcome"] == "rated"           # the gateway's repeat push changes nothing
    rated = [e for e in case_events(stack, case_id) if e.type == "case.followed_up"]
    assert len(rated) == 1 and rated[0].data["rating"] == "satisfied" and rated[0].data["via"] == "sms"

    redeliver(stack, case_events(stack, case_id))
    time.sleep(3)                                    # time for any duplicate to show

    sms = texts_to(sms_gateway, phone)
    kinds = Counter("受理编号" in t and "receipt" or "已办结" in t and "result" or "回访" in t and "follow_up" or t
                    for t in sms)
    assert kinds == Counter({"receipt": 1, "result": 1, "follow_up": 1}), sms
    keys = [b["id"] for b in sms_gateway.json_bodies("/sms")]
    assert len(keys) == len(set(keys))                           # no key twice, across the whole session
    mails = mails_about(smtp_server, tracking_no)
    warned = [e for e in case_events(stack, case_id) if e.type == "case.deadline_warned"]
    assert warned                                   # category 203: an hour to accept, warned an hour ahead
    to_cadre = Counter(m["Subject"] for m in mails if m["To"] == CADRE_EMAIL)
    assert to_cadre == Counter({"派单通知": 1, "期限提醒": len(warned)}), to_cadre
    assert len({m["Message-ID"] for m in mails}) == len(mails)
    sent = [e for e in case_events(stack, case_id) if e.type == "notification.sent"]
    # receipt, assignment, one warning per deadline warned, result, follow-up
    assert len(sent) == len({e.data["key"] for e in sent}) == 4 + len(warned)

    subscriber.failing = False                       # the subscriber recovers
    expected = [e for e in case_events(stack, case_id) if e.type.startswith("case.")]

    def got_all():
        bodies = [json.loads(r["body"]) for r in subscriber.accepted("/hook")]
        mine = [b for b in bodies if b["subject"] == case_id]
        return mine if {b["id"] for b in mine} >= {e.event_id for e in expected} else None
    mine = wait_for(got_all, 90, "the subscriber to catch up")
    order = [b["id"] for b in mine]
    assert [i for i in dict.fromkeys(order)] == [e.event_id for e in expected]
    for r in subscriber.accepted("/hook"):
        assert r["headers"]["X-Minqing-Signature"] == "sha256=" + hmac.new(sub["secret"].encode(), r["body"],
                                                                         hashlib.sha256).hexdigest()
        assert "subject" not in json.loads(r["body"])["data"].get("reporter", {})
    assert any(r["answered"] == 500 for r in subscriber.requests)
