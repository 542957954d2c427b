"""Notify's delivery outbox on both backends: two senders running at once send each notification
once, to the address the vault holds."""
from __future__ import annotations

import threading

from services.notify.outbox import deliver_due
from tests.interface.test_notify_delivery import report, world  # noqa: F401  (the shared fixture)


class Recording:
    name = "sms"

    def __init__(self):
        self.sent, self.lock = [], threading.Lock()

    def send(self, message):
        with self.lock:
            self.sent.append((message.key, message.address))


def test_two_senders_send_each_notification_once(world):  # noqa: F811
    ledger, vault, rules, clock = world
    for n in range(20):
        report(ledger, vault, f"c-{n:04d}", phone=f"1390000{n:04d}")
    rules.catch_up()
    channel = Recording()
    for _ in range(3):
        senders = [threading.Thread(target=deliver_due, args=(ledger, vault, {"log": channel, "sms": channel}, clock),
                                    kwargs={"limit": 7}) for _ in range(2)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
    keys = [k for k, _ in channel.sent]
    assert len(keys) == 20 and len(set(keys)) == 20
    assert {a for _, a in channel.sent} == {f"1390000{n:04d}" for n in range(20)}
    assert len([e for e in ledger.iter_all() if e.type == "notification.sent"]) == 20
