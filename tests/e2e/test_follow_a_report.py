"""Following one report across every process by its logs and metrics (issue #15 item 6), on the
session's embedded stack (`sqlite_stack`, started once for many tests: this adds a report and reads).

Every process logs one JSON object per line; the correlation fields (`case_id`, `stream`,
`event_id`, `position`) let an operator follow a report: intake took it, the relay published each of
its events, routing, notify and assessment applied them — and nothing personal is in any line.
The gateway and the services count the request under its route template, never its raw path."""
from __future__ import annotations

import json
import time
import urllib.request

from tests.support import fresh_phone

NAME = "欧阳追踪"


def _lines(stack, process: str) -> list[dict]:
    text = (stack.run_dir / "logs" / f"{process}.log").read_text(errors="replace")
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))         # a line that looks like a record must be one
    return out


def _about(stack, process: str, case_id: str) -> list[dict]:
    return [r for r in _lines(stack, process) if r.get("case_id") == case_id]


def test_one_report_is_followed_through_every_process_by_its_case_id(sqlite_stack):
    stack = sqlite_stack
    phone = fresh_phone()
    code, body = stack.request("POST", "/api/v1/cases", {
        "county": "longjiang", "channel": "hotline", "category": "202", "summary": "村口路灯坏了，晚上看不见路",
        "location": {"township": "黑岗乡", "village": "靠山村", "hamlet": "靠山村11屯"},
        "reporter": {"name": NAME, "phone": phone}})
    assert code == 201, body
    case_id = body["case_id"]
    expected = {"intake": "case reported at the desk", "relay": "published case.reported",
                "routing": "routing.assignments applied case.reported",
                "notify": "notify.rules applied case.reported", "assessment": "assessment.facts applied case.reported"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = {p: [r["message"] for r in _about(stack, p, case_id)] for p in expected}
        if all(expected[p] in seen[p] for p in expected) and "published case.assigned" in seen["relay"]:
            break
        time.sleep(0.5)
    assert all(expected[p] in seen[p] for p in expected), seen
    published = {r["event_type"]: r for r in _about(stack, "relay", case_id)}
    assert {"case.reported", "case.assigned"} <= set(published)
    reported = published["case.reported"]
    assert reported["stream"] == f"case-{case_id}" and reported["event_id"] and reported["position"] > 0
    routed = next(r for r in _about(stack, "routing", case_id) if r["event_type"] == "case.reported")
    assert (routed["event_id"], routed["position"], routed["process"]) == (reported["event_id"], reported["position"], "routing")
    assert {"ts", "level", "logger"} <= set(routed)
    for process in (*expected, "gateway", "console"):
        for record in _lines(stack, process):
            assert phone not in json.dumps(record, ensure_ascii=False) and NAME not in json.dumps(record, ensure_ascii=False)


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_requests_are_measured_by_route_template_in_the_gateway_and_the_service(sqlite_stack):
    stack = sqlite_stack
    code, _ = stack.request("GET", "/api/v1/cases/00000000-0000-4000-8000-00000000abcd")
    assert code == 404
    code, _ = stack.request("POST", "/api/v1/cases", {})      # a POST of its own: the test runs in any order
    assert code == 422
    for port, process in ((stack.http_port, "gateway"), (stack.http_port + 1, "intake")):
        # a request is counted when the server closes its answer, just after the client has read it
        deadline = time.monotonic() + 10
        while True:
            text = _metrics(port)
            series = [line for line in text.splitlines() if line.startswith("minqing_http_requests_total{")]
            if (any(f'process="{process}"' in s and 'route="/api/v1/cases/{case_id}"' in s and 'status="404"' in s
                    for s in series) and f'method="POST",process="{process}",route="/api/v1/cases"' in text) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert any(f'process="{process}"' in s and 'route="/api/v1/cases/{case_id}"' in s and 'status="404"' in s
                   for s in series), series
        assert "00000000abcd" not in text
        assert f'minqing_http_request_duration_seconds_bucket{{le="0.1",method="POST",process="{process}",route="/api/v1/cases"}}' in text
