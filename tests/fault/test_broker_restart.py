"""A broker restart loses nothing: reports taken while RabbitMQ is down are assigned and published
once it is back; the services and the relay reconnect by themselves."""
from __future__ import annotations

import os
import time
from cryptography.fernet import Fernet

from minqing.shell import devstack
from tests.e2e.conftest import Stack, start_on_free_ports
from tests.e2e.test_case_flow import _wait_case, report
from tests.support import county_dir, Watcher, doubly_assigned


def test_reports_survive_a_broker_restart(tmp_path, postgres):
    broker = devstack.RabbitMQ(tmp_path / "mq").start()
    db = postgres.create_database("fault_broker_restart")
    counties = county_dir(tmp_path, "deploy/counties/longjiang.yaml")
    env = {**os.environ, "MINQING_RUN_DIR": str(tmp_path / "run"), "MINQING_DATABASE_URL": db,
           "MINQING_AMQP_URI": broker.uri, "MINQING_COUNTIES_DIR": str(counties),
           "MINQING_VAULT_KEY": Fernet.generate_key().decode()}
    (tmp_path / "run").mkdir()
    stack = start_on_free_ports(lambda port: Stack(tmp_path / "run", env, port), env)   # another port block if one is taken
    try:
        watcher = Watcher(broker.uri, keys=("longjiang.case.*",), name="test.broker-restart")
        before = stack.request("POST", "/api/v1/cases", report(summary="重启前"))[1]["case_id"]
        _wait_case(stack, before, "assigned")

        broker.stop()
        during = [stack.request("POST", "/api/v1/cases", report(summary=f"停机期间{i}"))[1]["case_id"] for i in range(3)]
        for case_id in during:     # routing follows the ledger even without the broker
            _wait_case(stack, case_id, "assigned", timeout=30)
        broker.start()
        watcher.reconnect()

        after = stack.request("POST", "/api/v1/cases", report(summary="重启后"))[1]["case_id"]
        _wait_case(stack, after, "assigned", timeout=60)

        seen: set[tuple[str, str]] = set()
        want = {(c, t) for c in [before, *during, after] for t in ("cn.minqing.case.reported", "cn.minqing.case.assigned")}
        deadline = time.monotonic() + 60
        while not want <= seen and time.monotonic() < deadline:
            seen |= {(b["subject"], b["type"]) for _, b, _ in watcher.collect(50, timeout=1)}
        assert want <= seen, f"missing on the broker: {sorted(want - seen)}"
        watcher.close()

        assert doubly_assigned(db) == []
        code, health = stack.request("GET", "/health", token=None)
        assert code == 200, health
    finally:
        stack.stop()
        broker.stop()
