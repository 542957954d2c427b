"""Every channel of the seeds on the real stack (issue #4 §1, §2, §4, §5), through the gateway, with
what each records: hotline (24-hour line), a leader's published phone, the service hall (群众之家),
a cadre's field visit (民情下访) and the market-day post (便民服务岗) registered later from paper, the
suggestion box (anonymous), the online platform, WeChat (a signed inbound webhook), a proxy agent
(代办员) — and Open311 in tests/e2e/test_open311.py."""
from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from tests.e2e.test_case_flow import _wait_case
from tests.support import fresh_phone

SEED_000 = "种子000：靠山村11屯群众反映"


def _report(channel: str, **extra) -> dict:
    body = {"county": "longjiang", "channel": channel, "category": "302", "kind": "help",
            "summary": f"{SEED_000}低保申请需要代办（{channel}）",
            "location": {"township": "heigang", "village": "heigang.kaoshan", "hamlet": "heigang.kaoshan.11"},
            "reporter": {"name": "王五", "phone": fresh_phone()}}
    body.update(extra)
    return body


def _reported(stack, case_id: str) -> dict:
    """The case.reported data as recorded (read back from the integrator's event feed)."""
    token = stack.issue("integrator")
    after = 0
    while True:
        code, page = stack.request("GET", f"/api/v1/events?after={after}&limit=1000", token=token)
        assert code == 200
        for event in page["events"]:
            if event["subject"] == case_id and event["type"] == "cn.minqing.case.reported":
                return event["data"]
        if page["next_after"] == after:
            raise AssertionError(f"no case.reported for {case_id}")
        after = page["next_after"]


@pytest.mark.parametrize("channel", ["hotline", "leader_phone", "service_hall", "online"])
def test_direct_channels_register_and_assign(stack, channel):
    code, body = stack.request("POST", "/api/v1/cases", _report(channel))
    assert code == 201 and body["status"] == "reported", body
    case = _wait_case(stack, body["case_id"], "assigned")
    assert case["channel"] == channel and case["assignment"]["unit"] == "heigang.kaoshan-station"
    data = _reported(stack, body["case_id"])
    assert data["channel"] == channel and data["reporter"]["phone_masked"].startswith("137****")


@pytest.mark.parametrize("channel", ["field_visit", "market_post"])
def test_offline_reports_keep_their_original_time_and_paper_form(stack, channel):
    """Seed 000's 民情下访 and market-day posts: taken on paper, registered later."""
    cadre = stack.issue("cadre", "longjiang", "heigang.kaoshan-station", "lj-c002")
    taken = "2026-11-20T10:30:00+08:00"
    code, body = stack.request("POST", "/api/v1/cases", _report(channel, reported_at=taken, paper_form_ref="HG-2026-117"),
                               token=cadre)
    assert code == 201, body
    case = _wait_case(stack, body["case_id"], "assigned")
    assert case["reported_at"] == "2026-11-20T10:30:00+08:00" and case["registered_at"] > case["reported_at"]
    assert _reported(stack, body["case_id"])["paper_form_ref"] == "HG-2026-117"
    code, err = stack.request("POST", "/api/v1/cases", _report(channel, reported_at=taken), token=cadre)
    assert code == 422 and set(err["error"]["fields"]) == {"paper_form_ref"}


def test_only_offline_channels_may_be_back_dated(stack):
    code, err = stack.request("POST", "/api/v1/cases", _report("hotline", reported_at="2026-11-20T10:30:00+08:00",
                                                                 paper_form_ref="X"))
    assert code == 422 and set(err["error"]["fields"]) == {"reported_at"}


def test_a_suggestion_box_note_may_be_anonymous_and_is_still_trackable(stack):
    body = _report("suggestion_box", reporter=None, summary="建议在靠山村11屯路口安装路灯", kind="suggestion")
    code, made = stack.request("POST", "/api/v1/cases", body)
    assert code == 201, made
    assert _reported(stack, made["case_id"])["reporter"] == {"name_masked": "", "phone_masked": ""}
    code, seen = stack.request("GET", f"/api/v1/track/{made['tracking_no']}?pin={made['pin']}", token=None)
    assert code == 200 and seen["tracking_no"] == made["tracking_no"]
    code, err = stack.request("POST", "/api/v1/cases", _report("hotline", reporter=None))
    assert code == 422 and "reporter" in err["error"]["fields"]


def test_a_proxy_agent_reports_on_a_residents_behalf(stack):
    """Seed 000: "选择…党员干部担任专职代办员" — the agent is recorded with the report."""
    agent = stack.issue("cadre", "longjiang", "heigang.kaoshan.11-post", "lj-c001")
    code, made = stack.request("POST", "/api/v1/cases", _report("proxy_agent"), token=agent)
    assert code == 201, made
    assert _reported(stack, made["case_id"])["agent"] == "lj-c001"
    code, err = stack.request("POST", "/api/v1/cases", _report("proxy_agent"))          # an operator must name one
    assert code == 422 and set(err["error"]["fields"]) == {"agent"}
    code, err = stack.request("POST", "/api/v1/cases", _report("proxy_agent", agent="nobody"))
    assert code == 422 and set(err["error"]["fields"]) == {"agent"}


def test_details_attachments_address_and_coordinates_are_recorded_masked(stack):
    phone = fresh_phone()
    body = _report("online", details=f"联系人电话{phone}，下午在家", attachments=[
        {"ref": "https://files.example.cn/a/123.jpg", "media_type": "image/jpeg", "name": "现场照片.jpg"}],
        location={"township": "黑岗乡", "village": "靠山村", "address": "靠山村11屯东头", "coordinates": {"lat": 47.33, "lon": 123.18}})
    code, made = stack.request("POST", "/api/v1/cases", body)
    assert code == 201, made
    data = _reported(stack, made["case_id"])
    assert phone not in json.dumps(data) and "下午在家" in data["details"]
    assert data["attachments"][0]["ref"].endswith("123.jpg") and data["coordinates"] == {"lat": 47.33, "lon": 123.18}
    assert data["address"] == "靠山村11屯东头"


def test_every_bad_field_is_named(stack):
    body = _report("online", details="x" * 8001, attachments=[{"ref": "not a uri"}],
                   location={"township": "heigang", "coordinates": {"lat": 95, "lon": 0}},
                   reporter={"name": "王五", "phone": fresh_phone(), "id_number": "110101199003071234"})
    code, err = stack.request("POST", "/api/v1/cases", body)
    assert code == 422
    assert set(err["error"]["fields"]) == {"details", "attachments.0.ref", "location.coordinates.lat", "reporter.id_number"}


def test_a_repeat_from_the_same_resident_is_merged_and_raises_the_originals_urgency(stack):
    phone = fresh_phone()
    first = _report("hotline", reporter={"name": "赵六", "phone": phone}, category="202", summary="村道水毁")
    code, original = stack.request("POST", "/api/v1/cases", first)
    assert code == 201
    _wait_case(stack, original["case_id"], "assigned")
    code, again = stack.request("POST", "/api/v1/cases", {**first, "channel": "online", "summary": "村道还没修"})
    assert code == 201 and again["status"] == "merged" and again["merged_into"] == original["case_id"]
    seen = stack.request("GET", f"/api/v1/cases/{original['case_id']}")[1]
    assert seen["urgency"] == "urgent" and "case.urgency_raised" in [h["type"] for h in seen["history"]]
    merged = stack.request("GET", f"/api/v1/cases/{again['case_id']}")[1]
    assert merged["status"] == "merged" and merged["assignment"] is None       # no double work
    code, tracked = stack.request("GET", f"/api/v1/track/{again['tracking_no']}?pin={again['pin']}", token=None)
    assert code == 200 and tracked["status_text"] == "已并入同类诉求办理"


def test_reports_of_one_spot_are_merged_but_other_spots_are_not(stack):
    spot = {"township": "heigang", "village": "heigang.kaoshan", "address": "靠山村 大桥 南侧"}
    code, one = stack.request("POST", "/api/v1/cases", _report("hotline", category="202", location=spot))
    assert code == 201 and one["status"] == "reported"
    code, two = stack.request("POST", "/api/v1/cases", _report("hotline", category="202",
                                                               location={**spot, "address": "靠山村大桥南侧！"}))
    assert code == 201 and two["merged_into"] == one["case_id"]            # the same spot, written differently
    code, three = stack.request("POST", "/api/v1/cases", _report("hotline", category="202",
                                                                 location={**spot, "address": "靠山村小学门口"}))
    assert code == 201 and three["status"] == "reported"
    near = {"township": "heigang", "coordinates": {"lat": 47.40001, "lon": 123.20001}}
    code, four = stack.request("POST", "/api/v1/cases", _report("hotline", category="202", location=near))
    code, five = stack.request("POST", "/api/v1/cases", _report("hotline", category="202", location={
        "township": "heigang", "coordinates": {"lat": 47.40030, "lon": 123.20001}}))          # ~32 m away
    assert five["merged_into"] == four["case_id"]


# ---- WeChat -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wechat_secret(stack):
    out = subprocess.run([sys.executable, "-m", "minqing.shell.cli", "channel", "secret", "wechat", "--county", "longjiang"],
                         env=stack.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def _wechat(stack, secret: str, message: dict, signature: str | None = None):
    raw = json.dumps(message, ensure_ascii=False).encode()
    sig = signature or "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return stack.request("POST", "/api/v1/channels/wechat/longjiang", raw=raw, token=None,
                         headers={"X-Minqing-Signature": sig})


def _message(**extra) -> dict:
    body = {"msg_id": uuid.uuid4().hex, "openid": "oWx_" + uuid.uuid4().hex[:20], "timestamp": int(time.time()),
            "category": "302", "summary": "微信反映：低保待遇咨询", "location": {"township": "heigang", "village": "heigang.kaoshan"},
            "reporter": {"name": "王五", "phone": fresh_phone()}}
    body.update(extra)
    return body


def test_wechat_messages_are_signed_fresh_and_registered_once(stack, wechat_secret):
    message = _message()
    code, made = _wechat(stack, wechat_secret, message)
    assert code == 201, made
    case = _wait_case(stack, made["case_id"], "assigned")
    assert case["channel"] == "wechat"
    data = _reported(stack, made["case_id"])
    assert data["external_ref"] == f"wechat:{message['msg_id']}" and message["openid"] not in json.dumps(data)
    code, again = _wechat(stack, wechat_secret, message)                      # WeChat's retry of the same push
    assert code == 200 and again["case_id"] == made["case_id"] and again["status"] == "already_registered"
    assert _wechat(stack, wechat_secret, _message(), signature="sha256=" + "0" * 64)[0] == 401
    assert _wechat(stack, "not-the-secret", _message())[0] == 401
    assert _wechat(stack, wechat_secret, _message(), signature="sha256=é")[0] == 401
    code, err = _wechat(stack, wechat_secret, _message(timestamp=int(time.time()) - 3600))
    assert code == 422 and set(err["error"]["fields"]) == {"timestamp"}
    code, err = _wechat(stack, wechat_secret, _message(summary="", location={}))
    assert code == 422 and {"summary", "location.township"} <= set(err["error"]["fields"])


# ---- erasure -------------------------------------------------------------------------------------

def test_erasing_a_resident_makes_their_data_unreadable_and_keeps_the_ledger_whole(stack):
    code, made = stack.request("POST", "/api/v1/cases", _report("hotline"))
    assert code == 201
    _wait_case(stack, made["case_id"], "assigned")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "minqing.shell.cli", *args], env=stack.env, capture_output=True,
                              text=True, timeout=120)
    shown = cli("resident", "show", "--case", made["case_id"])
    assert shown.returncode == 0 and "王五" in shown.stdout
    erased = cli("resident", "erase", "--case", made["case_id"])
    assert erased.returncode == 0, erased.stderr
    assert cli("resident", "show", "--case", made["case_id"]).returncode == 1
    assert cli("resident", "erase", "--case", made["case_id"]).returncode == 1          # already gone
    assert cli("audit", "verify").returncode == 0
    code, case = stack.request("GET", f"/api/v1/cases/{made['case_id']}")
    assert code == 200 and case["status"] == "assigned"                              # the case still counts
    with urllib.request.urlopen(stack.base + f"/api/v1/track/{made['tracking_no']}?pin={made['pin']}") as resp:
        assert resp.status == 200
