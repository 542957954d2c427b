"""A database that cannot be reached answers 503 `unavailable` with Retry-After (issue #12 §3), not
500 `internal_error`: the request changed nothing and the client should send it again; once the
database is back, the same request is taken."""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

from minqing.shell import devstack
from tests.e2e.conftest import Stack, start_on_free_ports
from tests.e2e.test_case_flow import _wait_case, report
from tests.support import county_dir


def _post(stack: Stack, body: dict) -> tuple[int, dict, dict]:
    req = urllib.request.Request(stack.base + "/api/v1/cases", data=json.dumps(body, ensure_ascii=False).encode(),
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "Authorization": f"Bearer {stack.tokens['operator']}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def test_a_database_outage_is_503_with_retry_after(tmp_path, rabbit):
    pg = devstack.PostgreSQL(tmp_path / "pg").start()
    counties = county_dir(tmp_path, "deploy/counties/longjiang.yaml")
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "MINQING_RUN_DIR": str(run), "MINQING_DATABASE_URL": pg.url, "MINQING_AMQP_URI": rabbit.uri,
           "MINQING_COUNTIES_DIR": str(counties)}
    stack = start_on_free_ports(lambda port: Stack(run, env, port), env)   # another port block if one is taken
    try:
        assert _post(stack, report(summary="停库之前"))[0] == 201
        pg.stop()
        for summary in ("停库期间一", "停库期间二"):
            code, headers, body = _post(stack, report(summary=summary))
            assert code == 503, body
            assert body["error"]["code"] == "unavailable" and "database" in body["error"]["message"]
            assert headers.get("Retry-After") == "5"
        pg.start()
        deadline = time.monotonic() + 60
        while (answer := _post(stack, report(summary="恢复之后")))[0] == 503 and time.monotonic() < deadline:
            time.sleep(1)
        assert answer[0] == 201, answer
        _wait_case(stack, answer[2]["case_id"], "assigned", timeout=60)
        assert "internal_error" not in stack.logs()
    finally:
        stack.stop()
        pg.stop()
