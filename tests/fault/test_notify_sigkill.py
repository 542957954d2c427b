"""Kill notify with SIGKILL while it is sending, start it again: no message reaches the SMS gateway
twice (at most once per key), and every other message is still sent; the one caught mid-send, if
any, is failed as "interrupted" for an operator to decide, not silently repeated or lost."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import select

from minqing import county
from minqing.db import make_engine, read_transaction, write_transaction
from minqing.ledger import Ledger, Metadata, NewEvent
from minqing.service_kit import create_tables
from minqing.shell.devstack import free_port_block
from minqing.vault import Vault, metadata_obj as vault_md
from services.notify.outbox import public_key
from services.notify.tables import metadata_obj as notify_md, outbox_table
from tests.notify_servers import HttpRecorder
from tests.support import fresh_phone

CASES = 30


def _start_notify(env):
    return subprocess.Popen([sys.executable, "-m", "minqing.shell.service_main", "notify"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _statuses(engine) -> dict[str, str]:
    with read_transaction(engine) as conn:
        return {r.key: r.status for r in conn.execute(select(outbox_table.c.key, outbox_table.c.status))}


def test_notify_killed_mid_send_never_sends_twice(pg_url, rabbit, tmp_path):
    engine = make_engine(pg_url)
    create_tables(engine, notify_md, vault_md)
    ledger = Ledger(engine)
    county.publish(ledger, county.read_policy_file(Path("tests/fixtures/counties/heping.yaml")), "test")
    key = Fernet.generate_key()
    vault = Vault(key)
    phones = {}
    for n in range(CASES):
        phone = fresh_phone()
        with write_transaction(engine) as conn:
            subject = vault.store(conn, {"phone": phone})
        phones[phone] = n
        ledger.append(f"case-k{n:04d}", [NewEvent("case.reported", {
            "case_id": f"k{n:04d}", "county": "heping", "tracking_no": f"HP-20260302-{n:04d}", "channel": "hotline",
            "category": "202", "kind": "help", "urgency": "normal", "summary": "路灯不亮",
            "location": {"township": "hp-town", "village": None, "hamlet": None},
            "reporter": {"subject": subject, "name_masked": "*", "phone_masked": "137****0000"},
            "reported_at": "2026-03-02T01:00:00.000000Z"}, Metadata("operator:t", "heping"))])
    gateway = HttpRecorder()
    gateway.delay = 0.25                      # a slow gateway: notify is mid-send most of the time
    env = {**os.environ, "MINQING_DATABASE_URL": pg_url, "MINQING_AMQP_URI": rabbit.uri,
           "MINQING_RUN_DIR": str(tmp_path), "MINQING_VAULT_KEY": key.decode(), "MINQING_HTTP_PORT": "0",
           "MINQING_SMS_URL": gateway.url + "/sms", "MINQING_NOTIFY_SECONDS": "0.2",
           "MINQING_NOTIFY_LEASE_SECONDS": "3"}
    env["MINQING_HTTP_PORT"] = str(free_port_block(8))
    try:
        notify = _start_notify(env)
        deadline = time.monotonic() + 60
        while len(gateway.requests) < CASES // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gateway.requests, "notify sent nothing"
        time.sleep(0.1)                       # inside the next send
        os.kill(notify.pid, signal.SIGKILL)
        notify.wait()
        notify = _start_notify(env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            statuses = _statuses(engine)
            if len(statuses) == CASES and all(s in ("sent", "failed") for s in statuses.values()):
                break
            time.sleep(0.3)
        notify.send_signal(signal.SIGTERM)
        notify.wait(30)
    finally:
        gateway.close()

    received = [json.loads(r["body"]) for r in gateway.requests]
    keys = [b["id"] for b in received]
    assert len(keys) == len(set(keys)), "a notification reached the gateway twice"
    statuses = {public_key(k): v for k, v in _statuses(engine).items()}     # what leaves notify is the key's hash
    assert len(statuses) == CASES
    failed = [k for k, s in statuses.items() if s == "failed"]
    assert len(failed) <= 1                   # one sender, one message in flight at the kill
    assert {k for k, s in statuses.items() if s == "sent"} <= set(keys)
    assert set(keys) | set(failed) == set(statuses)     # nothing lost: sent, or failed for an operator
    events = [e for e in ledger.iter_all() if e.type.startswith("notification.")]
    assert sorted(e.data["key"] for e in events) == sorted(statuses)    # each outcome recorded once
    engine.dispose()
