"""A PostgreSQL crash and restart under the running stack: requests fail cleanly (JSON, no stack
trace) while it is down, nothing accepted is lost, nothing is assigned twice, and the projections
still equal what the ledger says."""
from __future__ import annotations

import os
import time
from cryptography.fernet import Fernet

from sqlalchemy import create_engine, text

from minqing.shell import devstack
from tests.e2e.conftest import Stack, start_on_free_ports
from tests.e2e.test_case_flow import _wait_case, report
from tests.support import county_dir, doubly_assigned


def test_a_database_crash_loses_nothing(tmp_path):
    broker = devstack.RabbitMQ(tmp_path / "mq").start()
    pg = devstack.PostgreSQL(tmp_path / "pg", durable=True).start()
    counties = county_dir(tmp_path, "deploy/counties/longjiang.yaml")
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "MINQING_RUN_DIR": str(run), "MINQING_DATABASE_URL": pg.url, "MINQING_AMQP_URI": broker.uri, "MINQING_COUNTIES_DIR": str(counties),
           "MINQING_VAULT_KEY": Fernet.generate_key().decode()}
    stack = start_on_free_ports(lambda port: Stack(run, env, port), env)   # another port block if one is taken
    try:
        accepted = []
        for i in range(3):
            code, body = stack.request("POST", "/api/v1/cases", report(summary=f"崩溃前{i}"))
            assert code == 201
            accepted.append(body["case_id"])
        pg.restart(abrupt=True)          # SIGKILL the server, start it again on the same data
        for i in range(10):
            code, body = stack.request("POST", "/api/v1/cases", report(summary=f"恢复中{i}"))
            if code == 201:
                accepted.append(body["case_id"])
            else:
                assert isinstance(body, dict) and "Traceback" not in str(body), body
            time.sleep(0.2)
        for case_id in accepted:
            _wait_case(stack, case_id, "assigned", timeout=60)

        engine = create_engine(pg.url)
        deadline = time.monotonic() + 30
        while True:       # the assessment projection catches up on its own schedule
            with engine.connect() as conn:
                reported = {r[0] for r in conn.execute(text("SELECT stream FROM ledger_events WHERE type = 'case.reported'"))}
                from_ledger = dict(conn.execute(text(
                    "SELECT data::json->>'cadre', count(*) FROM ledger_events WHERE type = 'case.assigned' "
                    "GROUP BY 1")).all())
                projected = dict(conn.execute(text(
                    "SELECT subject, count(*) FROM assessment_facts WHERE kind = 'cadre' AND metric = 'received' "
                    "GROUP BY 1")).all())
            if projected == from_ledger or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        engine.dispose()
        assert {f"case-{c}" for c in accepted} <= reported
        assert doubly_assigned(pg.url) == []
        assert projected == from_ledger
    finally:
        stack.stop()
        pg.stop()
        broker.stop()
