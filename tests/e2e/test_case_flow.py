"""One case through the whole stack on real PostgreSQL and RabbitMQ: intake → ledger → relay →
broker → routing → notify → assessment, and what a resident, a cadre and a subscriber see."""
from __future__ import annotations

import json
import os
import re
import signal
import time

import kombu
import pytest
from sqlalchemy import create_engine, text

from minqing.cloudevents import REQUIRED
from tests.support import USED_PHONES, fresh_phone, Watcher, doubly_assigned

PHONE = "13712345670"
NAME = "张三丰"
USED_PHONES.append(PHONE)


def report(**overrides) -> dict:
    body = {
        "county": "longjiang", "channel": "hotline", "category": "202",
        "summary": "黄牛场通往11屯的道路水毁严重，车辆无法通行",
        "location": {"township": "黑岗乡", "village": "靠山村", "hamlet": "靠山村11屯"},
        "reporter": {"name": NAME, "phone": fresh_phone()},
    }
    body.update(overrides)
    return body


@pytest.fixture
def watcher(rabbit):
    w = Watcher(rabbit.uri, keys=("longjiang.case.*",))
    yield w
    w.close()


def _events_for(watcher: Watcher, case_id: str, types: set[str], timeout: float = 20.0) -> dict[str, dict]:
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while not types <= set(found) and time.monotonic() < deadline:
        for key, body, _ in watcher.collect(50, timeout=0.5):
            if body["subject"] == case_id:
                found.setdefault(body["type"].removeprefix("cn.minqing."), body)
    return found


def _wait_case(stack, case_id: str, status: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = stack.request("GET", f"/api/v1/cases/{case_id}")
        if code == 200 and body["status"] == status:
            return body
        time.sleep(0.1)
    raise AssertionError(f"case {case_id} did not reach {status}: {body}")


def test_health_reports_every_part(stack):
    code, body = stack.request("GET", "/health", token=None)
    assert code == 200 and body["status"] == "ok"
    assert set(body["services"]) == {"intake", "routing", "notify", "assessment", "console"}
    for name, service in body["services"].items():
        if name == "console":          # the console keeps no ledger or broker connection of its own
            continue
        assert service["checks"]["ledger"]["backend"] == "postgresql"
        assert service["checks"]["broker"]["status"] == "ok"
    assert body["relay"]["status"] == "ok"


def test_county_catalogue_is_published(stack):
    code, body = stack.request("GET", "/api/v1/counties/longjiang", token=None)
    assert code == 200 and body["name"] == "龙江县"
    assert {t["name"] for t in body["townships"]} >= {"龙江镇", "山泉镇", "七棵树镇", "黑岗乡"}   # seed 000
    assert {"code": "202", "key": "road", "name": "道路及水毁修复", "start_tier": "village"} in body["categories"]
    assert stack.request("GET", "/api/v1/counties/atlantis")[0] == 404


def test_a_report_appears_on_the_broker_as_reported_then_assigned(stack, watcher):
    code, body = stack.request("POST", "/api/v1/cases", report())
    assert code == 201, body
    case_id = body["case_id"]
    assert re.fullmatch(r"LJ-\d{8}-\d{4}", body["tracking_no"]) and re.fullmatch(r"\d{6}", body["pin"])

    events = _events_for(watcher, case_id, {"case.reported", "case.assigned"})
    reported, assigned = events["case.reported"], events["case.assigned"]
    for ce in (reported, assigned):
        assert set(REQUIRED) <= set(ce) and ce["specversion"] == "1.0" and ce["county"] == "longjiang"
    assert int(reported["sequence"]) < int(assigned["sequence"])
    assert reported["data"]["tracking_no"] == body["tracking_no"]
    phone = USED_PHONES[-1]
    assert reported["data"]["reporter"] == {"name_masked": "张**", "phone_masked": f"137****{phone[-4:]}"}
    assert assigned["data"]["unit"] == "heigang.kaoshan-station" and assigned["data"]["tier"] == "village"
    assert assigned["data"]["policy_version"] >= 1 and "靠山村代理代办服务站" in assigned["data"]["rule"]
    serialized = json.dumps(events, ensure_ascii=False)
    assert phone not in serialized and NAME not in serialized


def test_case_view_resolve_and_scorecard(stack):
    code, body = stack.request("POST", "/api/v1/cases", report(category="101", summary="邻里因排水沟发生争执"))
    case_id = body["case_id"]
    case = _wait_case(stack, case_id, "assigned")
    assert case["assignment"]["tier"] == "hamlet"               # 小事不出村: a dispute starts in the hamlet
    assert case["assignment"]["cadre"] == "lj-c001"             # the cadre holding liaison for 11屯
    assert case["location"]["hamlet"]["name"] == "靠山村11屯"

    other = stack.issue("cadre", unit="heigang-centre", cadre="lj-c006")
    code, err = stack.request("POST", f"/api/v1/cases/{case_id}/resolve", {"resolution": "x"}, token=other)
    assert code == 404, err                                     # not their unit's case: it does not exist for them
    holder = stack.issue("cadre", unit="heigang.kaoshan.11-post", cadre="lj-c001")
    code, ok = stack.request("POST", f"/api/v1/cases/{case_id}/resolve",
                             {"resolution": "已现场调解，双方达成一致", "on_site": True}, token=holder)
    assert code == 200 and ok["status"] == "resolved"
    code, again = stack.request("POST", f"/api/v1/cases/{case_id}/resolve", {"resolution": "x"}, token=holder)
    assert code == 409 and again["error"]["code"] == "not_applicable"

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        code, card = stack.request("GET", "/api/v1/assessment/longjiang/cadres/lj-c001", token=stack.tokens["auditor"])
        if code == 200 and card["cards"][0]["counts"]["resolved"] >= 1:
            break
        time.sleep(0.2)
    counts = card["cards"][0]["counts"]
    assert counts["resolved"] >= 1 and counts["resolved_on_time"] >= 1 and counts["resolved_on_site"] >= 1


@pytest.mark.parametrize("payload, raw, status, fields", [
    (None, b"not json", 400, {"body"}),
    (None, b"[1, 2]", 400, {"body"}),
    ({}, None, 422, {"county", "channel", "category", "summary", "location", "reporter"}),
    ("phone", None, 422, {"reporter.phone"}),
    ("channel", None, 422, {"channel"}),
    ("category", None, 422, {"category"}),
    ("hamlet", None, 422, {"location.hamlet"}),
    ("county", None, 403, set()),          # a longjiang token cannot report for another county
    ("types", None, 422, {"summary", "urgency"}),
    ("long", None, 422, {"summary"}),
    ("blank", None, 422, {"summary", "reporter.name"}),
    ("ancient", None, 422, {"reported_at"}),
])
def test_bad_input_gets_a_clear_error_and_changes_nothing(stack, stack_db, payload, raw, status, fields):
    variants = {
        "phone": report(reporter={"name": NAME, "phone": "12345"}),
        "channel": report(channel="carrier_pigeon"),
        "category": report(category="999"),
        "hamlet": report(location={"township": "黑岗乡", "village": "靠山村", "hamlet": "月球屯"}),
        "county": report(county="atlantis"),
        "types": report(summary=42, urgency=["high"]),
        "long": report(summary="很" * 2001),
        "blank": report(summary="   ", reporter={"name": " ", "phone": PHONE}),
        "ancient": report(reported_at="0001-01-01T00:00:00+14:00"),
    }
    body = variants.get(payload, payload) if isinstance(payload, str) else payload
    count = "SELECT count(*) FROM ledger_events WHERE type = 'case.reported'"
    engine = create_engine(stack_db)
    with engine.connect() as conn:
        before = conn.execute(text(count)).scalar()
    code, err = stack.request("POST", "/api/v1/cases", body, raw=raw)
    with engine.connect() as conn:
        after = conn.execute(text(count)).scalar()
    engine.dispose()
    assert code == status, err
    assert set(err["error"].get("fields", {})) == fields
    assert after == before
    assert not any(PHONE in str(v) for v in err["error"].values())


def test_no_half_written_case_after_a_refused_report(stack, stack_db):
    engine = create_engine(stack_db)
    with engine.connect() as conn:
        reports = conn.execute(text("SELECT count(*) FROM ledger_events WHERE type = 'case.reported'")).scalar()
        access = conn.execute(text("SELECT count(*) FROM intake_case_access")).scalar()
    assert stack.request("POST", "/api/v1/cases", report(category="999"))[0] == 422
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger_events WHERE type = 'case.reported'")).scalar() == reports
        assert conn.execute(text("SELECT count(*) FROM intake_case_access")).scalar() == access
    engine.dispose()


def test_a_malformed_broker_message_goes_to_the_dead_letter_queue_and_service_keeps_working(stack, rabbit):
    with kombu.Connection(rabbit.uri) as conn:
        channel = conn.channel()
        dead = kombu.Queue("minqing.dead-letter")(channel)
        dead.purge()
        producer = conn.Producer(channel)
        producer.publish(b"{this is not json 13712345670", exchange="minqing.events",
                         routing_key="longjiang.case.reported", content_type="application/json",
                         content_encoding="utf-8")
        producer.publish({"specversion": "1.0", "hello": "world"}, exchange="minqing.events",
                         routing_key="longjiang.case.reported", serializer="json")
        undecodable, invalid = 0, 0
        deadline = time.monotonic() + 20
        while not (undecodable and invalid) and time.monotonic() < deadline:
            message = dead.get(no_ack=True)
            if message is None:
                time.sleep(0.1)
                continue
            headers = message.headers or {}
            raw = message.body if isinstance(message.body, bytes) else message.body.encode()
            if raw.startswith(b"{this is not json") and headers.get("x-death"):
                undecodable += 1           # rejected by kombu's decoder, kept by the queue's dead-letter exchange
            elif "missing CloudEvents attributes" in headers.get("x-minqing-reason", ""):
                invalid += 1               # decoded, but not a Minqing CloudEvent
    assert undecodable and invalid
    code, body = stack.request("POST", "/api/v1/cases", report())
    assert code == 201
    _wait_case(stack, body["case_id"], "assigned")
    assert "this is not json" not in stack.logs()       # a raw body may carry personal data: never logged


def test_kill_9_of_routing_loses_no_report_and_duplicates_no_assignment(stack, stack_db):
    case_ids = []
    operator = stack.issue("operator")        # a token of its own: each token has its own rate limit
    for i in range(20):
        if i == 5:
            os.kill(stack.pid("routing"), signal.SIGKILL)    # the supervisor restarts it
        code, body = stack.request("POST", "/api/v1/cases", report(summary=f"第{i}件：路灯不亮"), token=operator)
        assert code == 201
        case_ids.append(body["case_id"])
    for case_id in case_ids:
        _wait_case(stack, case_id, "assigned", timeout=60)
    assert doubly_assigned(stack_db) == []


def test_no_raw_personal_data_in_ledger_or_logs(stack, stack_db):
    """Principle 8: the raw phone number and name used above appear in no event and no log line."""
    engine = create_engine(stack_db)
    with engine.connect() as conn:
        dump = "\n".join(f"{r.data} {r.metadata}" for r in conn.execute(text("SELECT data, metadata FROM ledger_events")))
    engine.dispose()
    logs = stack.logs() + (stack.run_dir / "run.out").read_text(errors="replace")
    assert len(USED_PHONES) > 5 and NAME not in dump and NAME not in logs
    assert [p for p in USED_PHONES if p in dump or p in logs] == []


@pytest.mark.parametrize("path", ["/api/v1/cases/%E6%A1%88", "/api/v1/track/a%20b?pin=1", "/api/v1/track/" + "X" * 300 + "?pin=1",
                                  "/api/v1/cases/..%2F..%2Fetc", "/api/v1/nothing-here"])
def test_odd_paths_get_a_json_4xx(stack, path):
    code, body = stack.request("GET", path)
    assert 400 <= code < 500 and isinstance(body, dict) and "error" in body


def test_phone_numbers_typed_in_any_spelling_are_masked_before_recording(stack, stack_db):
    code, body = stack.request("POST", "/api/v1/cases", report(summary="请回电１３７１２３４５６７０或137.1234.5670"))
    assert code == 201
    engine = create_engine(stack_db)
    with engine.connect() as conn:
        data = conn.execute(text("SELECT data FROM ledger_events WHERE stream = :s AND type = 'case.reported'"),
                            {"s": f"case-{body['case_id']}"}).scalar()
    engine.dispose()
    assert "１３７１２３４５６７０" not in data and "137.1234.5670" not in data and "137****5670" in data


def test_a_wrong_method_on_a_known_path_gets_405(stack):
    code, body = stack.request("DELETE", "/api/v1/cases")
    assert code == 405 and body["error"]["code"] == "method_not_allowed"
