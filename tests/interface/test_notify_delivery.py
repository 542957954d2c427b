"""Notify on a real database (SQLite and PostgreSQL) with real local servers: webhook subscriptions
(order, signatures, recovery after failures), the outbox's at-most-once rule, and the 回访 lifecycle."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from minqing import county
from minqing.clock import ManualClock
from minqing.consumer import Follower
from minqing.db import write_transaction
from minqing.ledger import Metadata, NewEvent
from minqing.service_kit import create_tables
from minqing.vault import Vault, metadata_obj as vault_md
from services.notify import followup, outbox, subscriptions
from services.notify.channels import Message
from services.notify.rules import NotificationRules
from services.notify.tables import metadata_obj, outbox_table
from tests.notify_servers import HttpRecorder

HEPING = Path("tests/fixtures/counties/heping.yaml")


class Recording:
    """A channel that keeps what it is given (the outbox's own logic is under test here)."""

    def __init__(self, name="sms"):
        self.name, self.sent, self.fail = name, [], False

    def send(self, message: Message) -> None:
        if self.fail:
            raise ConnectionError("gateway down")
        self.sent.append(message)


@pytest.fixture
def world(ledger):
    create_tables(ledger.engine, metadata_obj, vault_md)
    county.publish(ledger, county.read_policy_file(HEPING), "test")
    vault = Vault(Fernet.generate_key())
    rules = Follower(ledger, NotificationRules(ledger))
    rules.catch_up()
    clock = ManualClock(ledger.clock.now() + timedelta(minutes=10))     # ahead of what the test records now
    return ledger, vault, rules, clock


def _meta(actor="operator:t"):
    return Metadata(actor, "heping")


def report(ledger, vault, case_id, phone="13900001111", urgency="normal"):
    with write_transaction(ledger.engine) as conn:
        subject = vault.store(conn, {"name": "王五", "phone": phone})
    data = {"case_id": case_id, "county": "heping", "tracking_no": f"HP-20260302-{case_id[-4:]}", "channel": "hotline",
            "category": "202", "kind": "help", "urgency": urgency, "summary": "路灯不亮",
            "location": {"township": "hp-town", "village": "hp-town.east", "hamlet": None},
            "reporter": {"subject": subject, "name_masked": "王*", "phone_masked": "139****1111"},
            "reported_at": "2026-03-02T01:00:00.000000Z"}
    ledger.append(f"case-{case_id}", [NewEvent("case.reported", data, _meta())])


def resolve(ledger, case_id):
    ledger.append(f"case-{case_id}", [
        NewEvent("case.assigned", {"case_id": case_id, "unit": "hp-town.east-station", "cadre": "hp-c001",
                                   "tier": "village", "response_due": "2026-03-03T01:00:00.000000Z",
                                   "resolution_due": "2026-03-09T16:00:00.000000Z", "policy_version": 1,
                                   "rule": "test"}, _meta("service:routing")),
        NewEvent("case.resolved", {"case_id": case_id, "cadre": "hp-c001", "unit": "hp-town.east-station",
                                   "on_site": False, "resolution": "已修复路灯"}, _meta("cadre:hp-c001"))])


# ---- webhook subscriptions -------------------------------------------------------------------------

def test_a_subscriber_that_fails_for_a_while_gets_every_event_in_order_with_valid_signatures(world):
    ledger, vault, rules, clock = world
    server = HttpRecorder()
    try:
        with write_transaction(ledger.engine) as conn:
            sub, secret = subscriptions.register(conn, ledger, vault, clock, county="heping", url=server.url + "/hook",
                                                 types=["case.*"], description="test", created_by="test")
        report(ledger, vault, "c-0001")
        report(ledger, vault, "c-0002")
        ledger.append("case-other", [NewEvent("case.progress_noted", {"case_id": "other", "cadre": "x", "note": "n"},
                                              Metadata("t", "longjiang"))])     # another county: never sent
        resolve(ledger, "c-0001")
        server.failing = True
        for _ in range(4):        # down: each round tries the first event once, then backs off
            subscriptions.deliver_round(ledger, vault, clock)
            clock.advance(timedelta(seconds=40))
        assert server.requests and not server.accepted()
        server.failing = False
        for _ in range(3):
            clock.advance(timedelta(minutes=6))
            subscriptions.deliver_round(ledger, vault, clock)
        expected = [e for e in ledger.iter_all() if e.county == "heping" and e.type.startswith("case.")]
        got = server.accepted()
        assert [json.loads(r["body"])["id"] for r in got] == [e.event_id for e in expected]
        assert [int(json.loads(r["body"])["sequence"]) for r in got] == [e.position for e in expected]
        for r in got:
            sig = "sha256=" + hmac.new(secret.encode(), r["body"], hashlib.sha256).hexdigest()
            assert r["headers"]["X-Minqing-Signature"] == sig
            assert r["headers"]["Content-Type"] == "application/cloudevents+json"
            assert "subject" not in json.loads(r["body"])["data"].get("reporter", {})   # never who complained
        with write_transaction(ledger.engine) as conn:
            state = subscriptions.get(conn, "heping", sub["id"])
        assert state["delivered"] == len(expected) and state["failures"] == 0
        # shown to the integrator in the county's time, stored UTC (issue #18.1)
        assert sub["created_at"].endswith("+08:00") and state["next_attempt_at"].endswith("+08:00"), state
    finally:
        server.close()


def test_a_subscription_refuses_a_private_url_unless_the_county_allows_it(world):
    ledger, vault, _, clock = world
    with write_transaction(ledger.engine) as conn:
        with pytest.raises(subscriptions.SubscriptionError) as err:
            subscriptions.register(conn, ledger, vault, clock, county="longjiang", url="http://127.0.0.1:9/x",
                                   types=["case.*"], description=None, created_by="t")
    assert "url" in err.value.errors
    with write_transaction(ledger.engine) as conn:
        with pytest.raises(subscriptions.SubscriptionError) as err:
            subscriptions.register(conn, ledger, vault, clock, county="heping", url="http://127.0.0.1:9/x",
                                   types=["nothing.*"], description=None, created_by="t")
    assert "types.0" in err.value.errors


# ---- the outbox --------------------------------------------------------------------------------------

def test_each_notification_is_sent_once_however_often_its_event_is_redelivered(world):
    ledger, vault, rules, clock = world
    report(ledger, vault, "c-0003")
    rules.catch_up()
    with write_transaction(ledger.engine) as conn:
        event = [e for e in ledger.iter_all() if e.type == "case.reported"][-1]
        NotificationRules(ledger).apply(conn, event)
    sms = Recording()
    for _ in range(3):
        outbox.deliver_due(ledger, vault, {"log": Recording("log"), "sms": sms}, clock)
    assert [m.address for m in sms.sent] == ["13900001111"]          # the vault's address, at send time only
    assert "HP-20260302-0003" in sms.sent[0].body


def test_a_send_interrupted_midway_is_not_repeated_but_failed_for_an_operator(world):
    """At most once per key: a sender that died between 'sending' and 'sent' may have delivered."""
    ledger, vault, rules, clock = world
    report(ledger, vault, "c-0004")
    rules.catch_up()
    rows = outbox.claim_due(ledger, clock, 10)
    with write_transaction(ledger.engine) as conn:       # the sender marks it sending, then dies
        conn.execute(outbox_table.update().where(outbox_table.c.key == rows[0].key)
                     .values(status="sending", attempts=1, next_attempt_at=rows[0].next_attempt_at))
    sms = Recording()
    clock.advance(outbox.LEASE + timedelta(seconds=1))
    outbox.deliver_due(ledger, vault, {"log": Recording("log"), "sms": sms}, clock)
    assert sms.sent == []
    failed = [e for e in ledger.iter_all() if e.type == "notification.failed"]
    assert len(failed) == 1 and "interrupted" in failed[0].data["error"]
    assert outbox.retry(ledger, clock, "heping", rows[0].key) == [rows[0].key]
    outbox.deliver_due(ledger, vault, {"log": Recording("log"), "sms": sms}, clock)
    assert len(sms.sent) == 1
    assert len([e for e in ledger.iter_all() if e.type == "notification.sent"]) == 1


def test_failures_back_off_then_are_recorded_as_failed(world):
    ledger, vault, rules, clock = world
    report(ledger, vault, "c-0005")
    rules.catch_up()
    sms = Recording()
    sms.fail = True
    channels = {"log": Recording("log"), "sms": sms}
    outbox.deliver_due(ledger, vault, channels, clock, max_attempts=3, backoff_seconds=10)
    outbox.deliver_due(ledger, vault, channels, clock, max_attempts=3, backoff_seconds=10)   # not due yet
    with write_transaction(ledger.engine) as conn:
        row = conn.execute(outbox_table.select()).first()
    assert row.attempts == 1 and row.status == "pending"
    clock.advance(timedelta(seconds=10))
    outbox.deliver_due(ledger, vault, channels, clock, max_attempts=3, backoff_seconds=10)
    clock.advance(timedelta(seconds=19))
    outbox.deliver_due(ledger, vault, channels, clock, max_attempts=3, backoff_seconds=10)   # 20 s backoff: not yet
    assert not [e for e in ledger.iter_all() if e.type == "notification.failed"]
    clock.advance(timedelta(seconds=1))
    outbox.deliver_due(ledger, vault, channels, clock, max_attempts=3, backoff_seconds=10)
    failed = [e for e in ledger.iter_all() if e.type == "notification.failed"]
    assert len(failed) == 1 and failed[0].data["attempts"] == 3


# ---- 回访 ------------------------------------------------------------------------------------------------

def _cycle(ledger, vault, rules, clock, channels):
    rules.catch_up()
    followup.advance(ledger, clock)
    outbox.deliver_due(ledger, vault, channels, clock)
    rules.catch_up()


def test_result_delivery_then_follow_up_rated_by_reply(world):
    """Issue #6 §4: the result to the resident on resolve (统一送达), then the 回访 with a reply code; it asks
    both questions (issue #17 §3) and a two-digit reply records solved and satisfaction."""
    ledger, vault, rules, clock = world
    report(ledger, vault, "c-0006")
    resolve(ledger, "c-0006")
    sms = Recording()
    channels = {"log": Recording("log"), "sms": sms}
    for _ in range(3):
        _cycle(ledger, vault, rules, clock, channels)
    texts = [m.body for m in sms.sent]
    assert any("已办结" in t for t in texts) and any("回访" in t and "解决" in t and "满意" in t for t in texts)
    types = [e.type for e in ledger.read_stream("case-c-0006")]
    assert "case.delivered" in types
    reply = followup.reply_code("12")
    position = followup.record_follow_up(ledger, "c-0006", reply.rating, "sms", actor="channel:sms",
                                         county="heping", solved=reply.solved)
    recorded = ledger.read_all(position - 1, 1)[0].data
    assert recorded["rating"] == "basically_satisfied" and recorded["solved"] is True
    with pytest.raises(followup.NotAwaiting):
        followup.record_follow_up(ledger, "c-0006", "unsatisfied", "call", actor="operator:x", county="heping")


def test_a_resident_who_never_replies_is_asked_again_then_recorded_unreachable(world):
    """Issue #6 §4: residents who cannot be reached are retried, then recorded as unreachable
    (heping: asked twice, a minute apart)."""
    ledger, vault, rules, clock = world
    report(ledger, vault, "c-0007")
    resolve(ledger, "c-0007")
    sms = Recording()
    channels = {"log": Recording("log"), "sms": sms}
    for _ in range(3):
        _cycle(ledger, vault, rules, clock, channels)
    for _ in range(3):
        clock.advance(timedelta(minutes=1, seconds=1))
        _cycle(ledger, vault, rules, clock, channels)
    asks = [m for m in sms.sent if "回访" in m.body]
    assert len(asks) == 2
    rated = [e for e in ledger.read_stream("case-c-0007") if e.type == "case.followed_up"]
    assert len(rated) == 1 and rated[0].data["rating"] == "unreachable" and rated[0].data["asks"] == 2


def _recipients(ledger, template):
    with write_transaction(ledger.engine) as conn:
        return sorted((r.recipient_ref, r.channel) for r in conn.execute(
            outbox_table.select().where(outbox_table.c.template == template)))


def test_overdue_and_escalation_reach_the_holder_the_new_unit_and_their_supervisors(world):
    """Issue #6 §4: overdue to the cadre and their supervisor; escalation to the new unit and the
    supervisor (of the township the unit serves; the county's for a county department)."""
    ledger, vault, rules, clock = world
    from services.notify import contacts
    from minqing.county import CountyPolicy, read_policy_file
    with write_transaction(ledger.engine) as conn:
        contacts.set_contact(conn, vault, CountyPolicy(read_policy_file(HEPING), 1), "supervisor:hp-town", "email",
                             "town@heping.example", clock.now())
        listed = contacts.list_contacts(conn, "heping")
    assert listed and all(c["updated_at"].endswith("+08:00") for c in listed), listed     # issue #18.1
    report(ledger, vault, "c-0008")
    meta = _meta("service:routing")
    ledger.append("case-c-0008", [
        NewEvent("case.assigned", {"case_id": "c-0008", "unit": "hp-town.east-station", "cadre": "hp-c001",
                                   "tier": "village", "response_due": "2026-03-03T01:00:00.000000Z",
                                   "resolution_due": "2026-03-04T16:00:00.000000Z", "policy_version": 1,
                                   "rule": "test"}, meta),
        NewEvent("case.overdue", {"case_id": "c-0008", "deadline": "resolution", "due": "2026-03-04T16:00:00.000000Z",
                                  "holder_unit": "hp-town.east-station", "holder_cadre": "hp-c001"}, meta),
        NewEvent("case.escalated", {"case_id": "c-0008", "from_unit": "hp-town.east-station", "from_tier": "village",
                                    "to_unit": "hp-town-centre", "to_tier": "township", "to_cadre": "hp-c002",
                                    "reason": "超期未办结，自动上报", "automatic": True,
                                    "resolution_due": "2026-03-10T16:00:00.000000Z", "policy_version": 1}, meta),
        NewEvent("case.escalated", {"case_id": "c-0008", "from_unit": "hp-town-centre", "from_tier": "township",
                                    "to_unit": "hp-dept.transport", "to_tier": "department", "to_cadre": "hp-c003",
                                    "reason": "需部门处理", "automatic": False,
                                    "resolution_due": "2026-03-20T16:00:00.000000Z", "policy_version": 1}, meta)])
    rules.catch_up()
    assert _recipients(ledger, "overdue") == [("cadre:hp-c001", "log"), ("supervisor:hp-town", "email")]
    assert _recipients(ledger, "escalation") == [("cadre:hp-c002", "log"), ("cadre:hp-c003", "log"),
                                                 ("supervisor:county", "log"), ("supervisor:hp-town", "email")]
    with write_transaction(ledger.engine) as conn:
        bodies = [r.body for r in conn.execute(outbox_table.select().where(outbox_table.c.template == "escalation"))]
    assert any("和平镇便民服务中心" in b and "自动" in b for b in bodies)


def test_notification_records_never_carry_the_residents_vault_reference(world):
    """Principle 8: subscribers get notification.* events; the outbox key names the vault subject, so
    events and channels carry only its hash."""
    ledger, vault, rules, clock = world
    report(ledger, vault, "c-0009")
    rules.catch_up()
    sms = Recording()
    outbox.deliver_due(ledger, vault, {"log": Recording("log"), "sms": sms}, clock)
    subject = [e for e in ledger.iter_all() if e.type == "case.reported"][-1].data["reporter"]["subject"]
    sent = [e for e in ledger.iter_all() if e.type == "notification.sent"]
    assert sent and all(subject not in json.dumps(e.data) for e in sent)
    assert all(subject not in m.key for m in sms.sent)


def test_a_result_no_longer_standing_is_neither_sent_nor_delivered(world):
    """Review finding: a failed result retried after the case was rated and reopened must not mark
    the reassigned case delivered."""
    ledger, vault, rules, clock = world
    report(ledger, vault, "c-0010")
    resolve(ledger, "c-0010")
    rules.catch_up()
    sms = Recording()
    sms.fail = True
    channels = {"log": Recording("log"), "sms": sms}
    for _ in range(6):
        outbox.deliver_due(ledger, vault, channels, clock, max_attempts=2, backoff_seconds=1)
        clock.advance(timedelta(seconds=5))
    followup.record_follow_up(ledger, "c-0010", "unsatisfied", "call", actor="operator:x", county="heping")
    ledger.append("case-c-0010", [NewEvent("case.reopened", {"case_id": "c-0010", "reason": "不满意"},
                                           _meta("service:routing"))])
    sms.fail = False
    outbox.retry(ledger, clock, "heping")
    for _ in range(4):
        outbox.deliver_due(ledger, vault, channels, clock, max_attempts=2, backoff_seconds=1)
        clock.advance(timedelta(seconds=5))
    assert not any("已办结" in m.body for m in sms.sent)
    assert "case.delivered" not in [e.type for e in ledger.read_stream("case-c-0010")]
