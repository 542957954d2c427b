"""Notify's delivery outbox on both backends: each notification is sent once, even with two senders,
and a failing channel is retried with backoff, then recorded as notification.failed."""
from __future__ import annotations

import threading
from datetime import timedelta

from minqing.clock import ManualClock
from minqing.consumer import Follower
from minqing.ledger import Metadata, NewEvent
from minqing.service_kit import create_tables
from minqing.vault import Vault, metadata_obj as vault_md
from services.notify.outbox import MAX_ATTEMPTS, NotificationRules, deliver_due
from services.notify.tables import metadata_obj


class Recording:
    name = "log"

    def __init__(self, fail=False):
        self.sent, self.fail, self.lock = [], fail, threading.Lock()

    def send(self, address, recipient_masked, body, key):
        if self.fail:
            raise ConnectionError(f"gateway refused {address}")
        with self.lock:
            self.sent.append((key, address))


def _report(ledger, vault, n):
    from minqing.db import write_transaction
    with write_transaction(ledger.engine) as conn:
        subject = vault.store(conn, {"name": "王五", "phone": f"1390000{n:04d}"})
    data = {"case_id": f"c{n}", "county": "longjiang", "tracking_no": f"LJ-20260105-{n:04d}", "channel": "hotline",
            "category": "202", "kind": "help", "urgency": "normal", "summary": "路灯不亮",
            "location": {"township": "heigang", "village": None, "hamlet": None},
            "reporter": {"subject": subject, "name_masked": "王*", "phone_masked": "139****0000"},
            "reported_at": "2026-01-05T01:00:00.000000Z"}
    ledger.append(f"case-c{n}", [NewEvent("case.reported", data, Metadata("operator:t", "longjiang"))])


def _setup(ledger):
    create_tables(ledger.engine, metadata_obj, vault_md)
    from cryptography.fernet import Fernet
    return Vault(Fernet.generate_key())


def test_two_senders_send_each_notification_once(ledger):
    vault = _setup(ledger)
    for n in range(20):
        _report(ledger, vault, n)
    Follower(ledger, NotificationRules(ledger)).catch_up()
    channel = Recording()
    clock = ManualClock(ledger.clock.now())
    for _ in range(3):
        senders = [threading.Thread(target=deliver_due, args=(ledger, vault, {"log": channel}, clock, 7))
                   for _ in range(2)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
    keys = [k for k, _ in channel.sent]
    assert len(keys) == 20 and len(set(keys)) == 20
    assert {a for _, a in channel.sent} == {f"1390000{n:04d}" for n in range(20)}    # the vault's real address
    sent_events = [e for e in ledger.iter_all() if e.type == "notification.sent"]
    assert len(sent_events) == 20


def test_a_failing_channel_is_retried_then_recorded_as_failed(ledger):
    vault = _setup(ledger)
    _report(ledger, vault, 1)
    Follower(ledger, NotificationRules(ledger)).catch_up()
    clock = ManualClock(ledger.clock.now())
    for _ in range(MAX_ATTEMPTS):
        deliver_due(ledger, vault, {"log": Recording(fail=True)}, clock)
        clock.advance(timedelta(minutes=10))
    failed = [e for e in ledger.iter_all() if e.type == "notification.failed"]
    assert len(failed) == 1 and failed[0].data["attempts"] == MAX_ATTEMPTS
    assert "13900000001" not in failed[0].data["error"]            # the address is masked in the record
