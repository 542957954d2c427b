"""Open311 GeoReport v2 on the real stack (issue #4 §6), called the way an existing client calls it:
form-encoded POST with api_key, resources with a .json or .xml extension, jurisdiction_id = county.
Spec: http://wiki.open311.org/GeoReport_v2."""
from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from tests.support import fresh_phone

J = "jurisdiction_id=longjiang"


def _get(stack, path: str):
    try:
        with urllib.request.urlopen(stack.base + path, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type"), err.read()


def _post(stack, path: str, form: dict):
    data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(stack.base + path, data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type"), err.read()


@pytest.fixture(scope="module")
def api_key(stack):
    return stack.issue("integrator")


def _form(api_key: str, **extra) -> dict:
    form = {"api_key": api_key, "jurisdiction_id": "longjiang", "service_code": "202", "lat": "47.3301",
            "long": "123.1802", "address_string": "靠山村11屯村口", "attribute[township]": "heigang",
            "attribute[village]": "heigang.kaoshan", "first_name": "五", "last_name": "王", "phone": fresh_phone(),
            "email": "resident@example.cn", "description": "村口道路被水冲毁，车辆无法通行",
            "media_url": "https://files.example.cn/p/1.jpg"}
    form.update(extra)
    return form


def test_services_and_definitions_in_json_and_xml(stack):
    """GET Service List and GET Service Definition."""
    code, ctype, body = _get(stack, f"/open311/v2/services.json?{J}")
    assert code == 200 and ctype.startswith("application/json")
    services = json.loads(body)
    road = next(s for s in services if s["service_code"] == "202")
    assert set(road) == {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
    assert road["metadata"] is True and road["type"] == "realtime" and road["service_name"] == "道路及水毁修复"
    code, ctype, body = _get(stack, f"/open311/v2/services.xml?{J}")
    root = ET.fromstring(body)
    assert code == 200 and ctype.startswith("text/xml") and body.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    assert root.tag == "services" and {e.tag for e in root} == {"service"}
    assert root.find("service/metadata").text == "true"

    code, _, body = _get(stack, f"/open311/v2/services/202.json?{J}")
    definition = json.loads(body)
    assert code == 200 and definition["service_code"] == "202"
    township = definition["attributes"][0]
    assert (township["code"], township["datatype"], township["required"]) == ("township", "singlevaluelist", True)
    assert {"key": "heigang", "name": "黑岗乡"} in township["values"]
    code, _, body = _get(stack, f"/open311/v2/services/202.xml?{J}")
    root = ET.fromstring(body)
    assert root.tag == "service_definition" and root.find("attributes/attribute/values/value/key") is not None


def test_a_request_is_created_listed_and_fetched_back_in_json_and_xml(stack, api_key):
    """POST Service Request, then GET Service Requests and GET Service Request."""
    # a spot of its own: the session's stack holds other tests' reports at 11屯's gate, and a report at
    # the same spot within the county's window is merged into the open original (a duplicate)
    spot = random.Random().randrange(10**6)
    lat, lon = f"{47.2 + spot % 1000 / 10000:.4f}", f"{123.0 + spot // 1000 / 10000:.4f}"
    code, ctype, body = _post(stack, "/open311/v2/requests.json",
                              _form(api_key, lat=lat, long=lon, address_string=f"靠山村11屯村口东{chr(0x4E00 + spot % 20000)}巷"))
    assert code == 201 and ctype.startswith("application/json"), body
    [created] = json.loads(body)
    request_id = created["service_request_id"]
    assert set(created) == {"service_request_id", "service_notice", "account_id"} and "LJ-" in created["service_notice"]

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        code, _, body = _get(stack, f"/open311/v2/requests/{request_id}.json?{J}&api_key={api_key}")
        [view] = json.loads(body)
        if view["agency_responsible"]:
            break
        time.sleep(0.2)
    assert code == 200 and view["status"] == "open" and view["service_code"] == "202"
    assert view["agency_responsible"] == "靠山村代理代办服务站" and view["expected_datetime"].endswith("+08:00")
    assert view["lat"] == float(lat) and view["long"] == float(lon) and view["media_url"].endswith("1.jpg")
    assert view["requested_datetime"].endswith("+08:00") and view["description"].startswith("村口道路")
    for field in ("service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"):
        assert field in view

    code, _, body = _get(stack, f"/open311/v2/requests/{request_id}.xml?{J}&api_key={api_key}")
    root = ET.fromstring(body)
    assert code == 200 and root.tag == "service_requests" and root.find("request/service_request_id").text == request_id
    assert root.find("request/status").text == "open"

    code, _, body = _get(stack, f"/open311/v2/requests/{request_id}.json?{J}")     # public: no address, no coordinates
    [public] = json.loads(body)
    assert code == 200 and "address" not in public and "lat" not in public and "description" not in public

    code, _, body = _get(stack, f"/open311/v2/requests.json?{J}&service_code=202&status=open&api_key={api_key}")
    assert code == 200 and request_id in [r["service_request_id"] for r in json.loads(body)]
    code, _, body = _get(stack, f"/open311/v2/requests.json?{J}&status=closed")
    assert code == 200 and request_id not in [r["service_request_id"] for r in json.loads(body)]
    code, _, body = _get(stack, f"/open311/v2/requests.xml?{J}&service_request_id={request_id}")
    assert code == 200 and [e.text for e in ET.fromstring(body).iter("service_request_id")] == [request_id]
    code, _, body = _get(stack, f"/open311/v2/tokens/{request_id}.json?{J}")
    assert code == 200 and json.loads(body) == [{"service_request_id": request_id, "token": request_id}]

    # the same request through Minqing's own API: channel open311, no raw personal data recorded
    code, case = stack.request("GET", f"/api/v1/cases/{request_id}")
    assert code == 200 and case["channel"] == "open311"


def test_errors_follow_the_spec_format(stack, api_key):
    code, ctype, body = _post(stack, "/open311/v2/requests.json", _form(""))
    assert code == 403 and json.loads(body)[0]["code"] == 403
    code, ctype, body = _post(stack, "/open311/v2/requests.xml", _form("mq_nothing.secret"))
    root = ET.fromstring(body)
    assert code == 403 and root.tag == "errors" and root.find("error/code").text == "403"
    code, _, body = _post(stack, "/open311/v2/requests.json", _form(api_key, service_code="999", lat="91", phone="123",
                                                                    **{"attribute[township]": ""}))
    problems = [e["description"] for e in json.loads(body)]
    assert code == 400 and len(problems) == 4, problems
    code, _, body = _post(stack, "/open311/v2/requests.json", _form(api_key, **{"attribute[township]": "月球乡"}))
    assert code == 400 and "township" in json.loads(body)[0]["description"]
    assert _get(stack, "/open311/v2/services.json")[0] == 400                             # no jurisdiction_id
    assert _get(stack, "/open311/v2/services.json?jurisdiction_id=atlantis")[0] == 404
    assert _get(stack, f"/open311/v2/services.yaml?{J}")[0] == 404
    assert _get(stack, f"/open311/v2/requests.json?{J}&start_date=yesterday")[0] == 400
    assert _get(stack, f"/open311/v2/requests.json?{J}&end_date=0001-01-01T00:00:00Z")[0] == 400
    assert _get(stack, f"/open311/v2/requests/00000000-0000-4000-8000-000000000000.json?{J}")[0] == 404
