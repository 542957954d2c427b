"""Open311 GeoReport v2's pure logic (services/intake/open311.py) against the published spec,
http://wiki.open311.org/GeoReport_v2 — no database, no HTTP. Each test names the spec section it holds
the module to."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from minqing.casefile import fold
from minqing.county import CountyPolicy, read_policy_file
from minqing.ledger import Metadata, RecordedEvent
from services.intake import open311
from services.intake.open311 import Open311Error
from services.intake.schemas import ReportIn

LONGJIANG = Path(__file__).resolve().parents[2] / "deploy" / "counties" / "longjiang.yaml"
XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'
REQUEST_FIELDS = ["service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"]
PRIVATE_FIELDS = {"description", "address", "lat", "long", "media_url"}


@pytest.fixture(scope="module")
def policy():
    return CountyPolicy(read_policy_file(LONGJIANG), 1)


def _form(**extra) -> dict:
    form = {"jurisdiction_id": "longjiang", "service_code": "202", "lat": "47.3301", "long": "123.1802",
            "address_string": "靠山村11屯村口", "attribute[township]": "heigang", "first_name": "五",
            "last_name": "王", "phone": "13800138000", "email": "resident@example.cn", "device_id": "dev-1",
            "description": "村口道路被水冲毁，车辆无法通行", "media_url": "https://files.example.cn/p/1.jpg"}
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}


def _event(version: int, type_: str, data: dict, at: str) -> RecordedEvent:
    return RecordedEvent(version, f"e{version}", "case-c1", version, type_, 1, {"case_id": "c1", **data},
                         Metadata("t", "longjiang"), at, "")


def _events(closed: bool) -> list[RecordedEvent]:
    events = [
        _event(1, "case.reported", {
            "county": "longjiang", "tracking_no": "LJ-1", "category": "202", "channel": "open311", "kind": "help",
            "urgency": "normal", "summary": "村口道路被水冲毁", "reporter": {},
            "location": {"township": "heigang", "village": "heigang.kaoshan", "hamlet": None},
            "reported_at": "2026-11-23T01:00:00.000000Z", "address": "靠山村11屯村口",
            "coordinates": {"lat": 47.3301, "lon": 123.1802},
            "attachments": [{"ref": "https://files.example.cn/p/1.jpg", "media_type": None, "name": None}]},
            "2026-11-23T01:00:01.000000Z"),
        _event(2, "case.assigned", {"unit": "heigang.kaoshan-station", "cadre": "lj-c002", "tier": "village",
                                    "response_due": "2026-11-24T01:00:00.000000Z",
                                    "resolution_due": "2026-11-30T09:00:00.000000Z", "policy_version": 1,
                                    "rule": "start tier"}, "2026-11-23T01:00:02.000000Z"),
    ]
    if closed:
        events.append(_event(3, "case.resolved", {"cadre": "lj-c002", "unit": "heigang.kaoshan-station",
                                                  "on_site": True, "resolution": "已修复"},
                             "2026-11-25T06:30:00.000000Z"))
    return events


def _xml(body: bytes) -> ET.Element:
    assert body.startswith(XML_DECLARATION)
    return ET.fromstring(body)


# ---- GET Service List / GET Service Definition ---------------------------------------------------

def test_services_list_is_the_catalogue_in_json_and_xml(policy):
    """Spec "GET Service List": an array of services with service_code, service_name, description,
    metadata, type, keywords and group; XML root <services> with <service> items; the spec's content types."""
    services = open311.services_list(policy)
    road = next(s for s in services if s["service_code"] == "202")
    assert road == {"service_code": "202", "service_name": "道路及水毁修复", "description": "道路及水毁修复（县交通运输局负责）",
                    "metadata": True, "type": "realtime", "keywords": "road", "group": "村代理代办服务站"}
    assert [s["service_code"] for s in services] == [c["code"] for c in policy.doc["categories"]]

    body, content_type = open311.render("services", services, "json")
    assert content_type == "application/json; charset=utf-8" and json.loads(body) == services

    body, content_type = open311.render("services", services, "xml")
    root = _xml(body)
    assert content_type == "text/xml; charset=utf-8"
    assert root.tag == "services" and [e.tag for e in root] == ["service"] * len(services)
    first = root.find("service")
    assert [e.tag for e in first] == ["service_code", "service_name", "description", "metadata", "type", "keywords",
                                      "group"]
    assert first.find("metadata").text == "true" and first.find("service_code").text == "101"


def test_service_definition_asks_for_the_place(policy):
    """Spec "GET Service Definition": service_code and attributes, each with variable, code, datatype,
    required, datatype_description, order, description and values (key, name); JSON is one object;
    an unknown service_code is 404."""
    definition = open311.service_definition(policy, "202")
    assert definition["service_code"] == "202"
    township, village, hamlet = definition["attributes"]
    assert [(a["code"], a["order"], a["required"], a["datatype"], a["variable"]) for a in (township, village, hamlet)] == [
        ("township", 1, True, "singlevaluelist", True), ("village", 2, False, "singlevaluelist", True),
        ("hamlet", 3, False, "singlevaluelist", True)]
    assert {"key": "heigang", "name": "黑岗乡"} in township["values"] and len(township["values"]) == 4
    assert {"key": "heigang.kaoshan", "name": "黑岗乡靠山村"} in village["values"]
    assert any(v["key"] == "heigang.kaoshan.11" for v in hamlet["values"])
    assert "(township)" in township["description"]

    body, _ = open311.render("service_definition", definition, "json")
    assert json.loads(body) == definition                             # an object, not an array

    root = _xml(open311.render("service_definition", definition, "xml")[0])
    assert root.tag == "service_definition" and [e.tag for e in root] == ["service_code", "attributes"]
    attribute = root.find("attributes/attribute")
    assert [e.tag for e in attribute] == ["variable", "code", "datatype", "required", "datatype_description", "order",
                                          "description", "values"]
    assert attribute.find("variable").text == "true" and attribute.find("datatype_description").text is None
    value = attribute.find("values/value")
    assert [e.tag for e in value] == ["key", "name"] and value.find("key").text == "longjiang-zhen"

    with pytest.raises(Open311Error) as info:
        open311.service_definition(policy, "road")                    # the key is not a service_code
    assert info.value.status == 404


# ---- POST Service Request ------------------------------------------------------------------------

def test_post_form_becomes_intakes_report(policy):
    """Spec "POST Service Request": service_code, lat & long, attribute[code]=value, first_name, last_name,
    phone, email, device_id, description, media_url — mapped onto intake's report format."""
    report = open311.parse_post(_form(**{"attribute[village]": "heigang.kaoshan"}), policy)
    assert report == {
        "county": "longjiang", "channel": "open311", "category": "202", "kind": "help", "urgency": "normal",
        "summary": "村口道路被水冲毁，车辆无法通行", "details": None,
        "location": {"township": "heigang", "village": "heigang.kaoshan", "hamlet": None, "address": "靠山村11屯村口",
                     "coordinates": {"lat": 47.3301, "lon": 123.1802}},
        "reporter": {"name": "王五", "phone": "13800138000", "id_number": None},
        "attachments": [{"ref": "https://files.example.cn/p/1.jpg", "media_type": None, "name": None}],
        "reported_at": None, "paper_form_ref": None, "agent": None,
        "contact": {"email": "resident@example.cn", "device_id": "dev-1"},
    }
    ReportIn().load({k: v for k, v in report.items() if k != "contact"})     # intake's own rules accept it


def test_post_without_phone_is_anonymous_and_address_id_is_a_location(policy):
    """Spec "POST Service Request": the location is lat & long, or address_string, or address_id; every
    personal field is optional. No phone: no reporter; a phone without names: 居民."""
    report = open311.parse_post(_form(lat=None, long=None, address_string=None, address_id="A-17", phone=None,
                                      description=None, media_url=None), policy)
    assert report["reporter"] is None and report["attachments"] == []
    assert report["summary"] == "道路及水毁修复"                      # no description: the service's name
    assert report["location"]["address"] == "address_id:A-17" and report["location"]["coordinates"] is None
    named = open311.parse_post(_form(first_name="", last_name=None), policy)
    assert named["reporter"]["name"] == "居民"


def test_a_bad_post_lists_every_problem_at_once(policy):
    """Spec "POST Service Request" (Possible Errors) and "Errors": several errors in one array, each with a
    code; 404 for a service_code not found, 400 for anything else; HTTP 400 when the problems are mixed."""
    form = _form(service_code="999", lat="91", long="abc", address_string=None, phone="123",
                 media_url="ftp://x/1.jpg", description="长" * 4001, **{"attribute[township]": ""})
    with pytest.raises(Open311Error) as info:
        open311.parse_post(form, policy)
    items = open311.error_items(info.value)
    assert info.value.status == 400 and len(items) == 8, items
    assert items[0] == {"code": 404, "description": "service_code '999' is not a service of this jurisdiction"}
    text = " | ".join(i["description"] for i in items)
    for named in ("lat must", "long must", "a location is required", "attribute[township]", "description",
                  "phone", "media_url"):
        assert named in text
    assert all(i["code"] == 400 for i in items[1:])

    with pytest.raises(Open311Error) as info:                         # only the service is unknown: 404
        open311.parse_post(_form(service_code="999"), policy)
    assert info.value.status == 404
    with pytest.raises(Open311Error) as info:                         # a place the county does not have
        open311.parse_post(_form(**{"attribute[township]": "heigang", "attribute[village]": "shanquan.pingan"}), policy)
    assert info.value.status == 400 and "attribute[village]" in open311.error_items(info.value)[0]["description"]
    with pytest.raises(Open311Error):                                 # lat & long "both need to be sent"
        open311.parse_post(_form(long=None), policy)


# ---- GET Service Request(s) ----------------------------------------------------------------------

def test_open_request_detailed_and_public(policy):
    """Spec "GET Service Request": the response fields in order, status open, w3 datetimes with an offset;
    without an api_key the resident's description, address, coordinates and media are left out."""
    events = _events(closed=False)
    case = fold("c1", events)
    view = open311.request_view(case, events, policy, detailed=True)
    assert list(view) == REQUEST_FIELDS
    assert view["status"] == "open" and view["status_notes"] == "已派单，承办单位办理中"
    assert (view["service_name"], view["service_code"], view["description"]) == ("道路及水毁修复", "202", "村口道路被水冲毁")
    assert view["agency_responsible"] == "靠山村代理代办服务站" and view["service_notice"] == ""
    assert view["requested_datetime"] == "2026-11-23T09:00:00+08:00"
    assert view["updated_datetime"] == "2026-11-23T09:00:02+08:00"
    assert view["expected_datetime"] == "2026-11-30T17:00:00+08:00"
    assert (view["address"], view["address_id"], view["zipcode"]) == ("靠山村11屯村口", None, None)
    assert (view["lat"], view["long"], view["media_url"]) == (47.3301, 123.1802, "https://files.example.cn/p/1.jpg")

    public = open311.request_view(case, events, policy, detailed=False)
    assert list(public) == [f for f in REQUEST_FIELDS if f not in PRIVATE_FIELDS]
    assert {k: view[k] for k in public} == public


def test_closed_request_names_the_resolver(policy):
    """Spec "GET Service Request": status closed once resolved; updated_datetime is when it was closed."""
    events = _events(closed=True)
    view = open311.request_view(fold("c1", events), events, policy, detailed=True)
    assert view["status"] == "closed" and view["status_notes"] == "已办结"
    assert view["agency_responsible"] == "靠山村代理代办服务站"
    assert view["updated_datetime"] == "2026-11-25T14:30:00+08:00"


def test_service_requests_xml_has_the_spec_elements(policy):
    """Spec "GET Service Requests" / "POST Service Request" / "GET service_request_id from a token" / "Errors":
    <service_requests><request>… with the fields as elements, null as an empty element; <errors><error>."""
    events = _events(closed=False)
    views = [open311.request_view(fold("c1", events), events, policy, detailed=True)]
    root = _xml(open311.render("service_requests", views, "xml")[0])
    assert root.tag == "service_requests" and [e.tag for e in root] == ["request"]
    request = root.find("request")
    assert [e.tag for e in request] == REQUEST_FIELDS
    assert request.find("address_id").text is None and request.find("lat").text == "47.3301"
    assert request.find("requested_datetime").text == "2026-11-23T09:00:00+08:00"
    assert json.loads(open311.render("service_requests", views, "json")[0]) == views

    posted = _xml(open311.render("post_result", [{"service_request_id": "c1", "service_notice": "受理编号 LJ-1",
                                                  "account_id": None}], "xml")[0])
    assert posted.tag == "service_requests" and [e.tag for e in posted.find("request")] == [
        "service_request_id", "service_notice", "account_id"]
    token = _xml(open311.render("tokens", [{"service_request_id": "c1", "token": "c1"}], "xml")[0])
    assert token.find("request/token").text == "c1"

    error = Open311Error(403, ["Invalid api_key received -- can't proceed"])
    assert open311.error_items(error) == [{"code": 403, "description": "Invalid api_key received -- can't proceed"}]
    errors = _xml(open311.render("errors", open311.error_items(error), "xml")[0])
    assert errors.tag == "errors" and [e.tag for e in errors.find("error")] == ["code", "description"]
    assert errors.find("error/code").text == "403"


def test_xml_stays_well_formed_whatever_a_resident_typed():
    """Spec "Encoding": UTF-8 text, escaped; characters XML 1.0 cannot carry are dropped, not written raw."""
    body, _ = open311.render("service_requests", [{"description": "<b>水毁</b> & \x0b\x00路断"}], "xml")
    assert _xml(body).find("request/description").text == "<b>水毁</b> & 路断"


def test_unknown_format_is_404():
    """Spec "Format Support": the format is the resource's extension; an unsupported one is not found."""
    with pytest.raises(Open311Error) as info:
        open311.render("services", [], "yaml")
    assert info.value.status == 404
    with pytest.raises(Open311Error):
        open311.split_format("services.yaml")
    assert open311.split_format("requests.xml") == ("requests", "xml")


# ---- GET Service Requests: filters ---------------------------------------------------------------

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


def test_filters_default_to_the_last_90_days():
    """Spec "GET Service Requests" (Optional Arguments, Response Volume): no dates means the most recent
    90 days; service_code and status are comma lists; an empty argument is as if not sent."""
    filters = open311.parse_filters({"service_code": "202,301", "status": "open, closed", "start_date": ""}, NOW)
    assert filters == {"ids": [], "codes": ["202", "301"], "statuses": ["open", "closed"],
                       "start": NOW - timedelta(days=90), "end": NOW}
    assert open311.MAX_RESULTS == 1000
    dated = open311.parse_filters({"start_date": "2026-10-01T00:00:00Z", "end_date": "2026-10-31T00:00:00+08:00"}, NOW)
    assert dated["start"] == datetime(2026, 10, 1, tzinfo=timezone.utc)
    assert dated["end"] == datetime(2026, 10, 30, 16, tzinfo=timezone.utc)
    ended = open311.parse_filters({"end_date": "2026-10-31T00:00:00Z"}, NOW)
    assert ended["end"] - ended["start"] == timedelta(days=90)


@pytest.mark.parametrize("args, named", [
    ({"start_date": "yesterday"}, "start_date"),
    ({"start_date": "2026-10-01"}, "start_date"),                       # a date without a time zone
    ({"end_date": "2026-10-01T00:00:00"}, "end_date"),                  # a time without a time zone
    ({"end_date": "0001-01-01T00:00:00Z"}, "end_date"),
    ({"start_date": "2026-11-01T00:00:00Z", "end_date": "2026-10-01T00:00:00Z"}, "start_date"),
    ({"status": "pending"}, "status"),
    ({"status": "open,resolved"}, "status"),
])
def test_bad_filters_are_400_naming_the_argument(args, named):
    """Spec "GET Service Requests": dates "Must use w3 format" (with a time zone, "Date/time format");
    status options are open and closed; anything else is a 400 general error."""
    with pytest.raises(Open311Error) as info:
        open311.parse_filters(args, NOW)
    assert info.value.status == 400 and named in open311.error_items(info.value)[0]["description"]


def test_service_request_id_overrides_all_other_arguments():
    """Spec "GET Service Requests": service_request_id, comma delimited, "overrides all other arguments"."""
    filters = open311.parse_filters({"service_request_id": "c1, c2", "status": "bogus", "service_code": "202",
                                     "start_date": "yesterday"}, NOW)
    assert (filters["ids"], filters["codes"], filters["statuses"]) == (["c1", "c2"], [], [])


def test_lat_and_long_are_sent_together(policy):
    """Spec "POST Service Request": "lat & long both need to be sent even though they are sent as two
    separate parameters"; one alone is named, once, even beside an unknown service_code."""
    with pytest.raises(Open311Error) as info:
        open311.parse_post(_form(service_code="999", long=None, address_string=None), policy)
    descriptions = [i["description"] for i in open311.error_items(info.value)]
    assert descriptions.count("lat and long must be given together") == 1 and info.value.status == 400


# ---- the door's rule (issue #12) -------------------------------------------------------------------

def test_the_form_is_read_under_the_doors_text_rule():
    """A control character in any field, or bytes that are not UTF-8, is 400 naming every field;
    the description may have line breaks, single-line fields may not."""
    assert open311.read_form("description=第一行%0A第二行&service_code=202".encode()) == {
        "description": "第一行\n第二行", "service_code": "202"}
    with pytest.raises(Open311Error) as caught:
        open311.read_form(b"jurisdiction_id=long%00jiang&description=a%01b&first_name=%E4%BA%94%0A&api_key=k")
    assert caught.value.status == 400
    named = [d.split(" ")[0] for _, d in caught.value.problems]
    assert named == ["description", "first_name", "jurisdiction_id"]
    with pytest.raises(Open311Error):
        open311.read_form(b"description=%ED%A0%80")       # an encoded surrogate is not UTF-8


@pytest.mark.parametrize("url", ["javascript:alert(document.cookie)", "data:text/html,<script>alert(1)</script>",
                                 "file:///etc/passwd", "https://u:p@files.example.cn/1.jpg"])
def test_media_url_must_be_an_http_link(policy, url):
    with pytest.raises(Open311Error) as caught:
        open311.parse_post(_form(media_url=url), policy)
    assert [d for _, d in caught.value.problems if d.startswith("media_url")], caught.value.problems


def test_a_recorded_unsafe_link_is_never_shown_as_media_url(policy):
    """Reports taken before links were checked may hold `javascript:`: Open311 does not echo it."""
    events = _events(closed=False)
    events[0].data["attachments"] = [{"ref": "javascript:alert(1)", "media_type": None, "name": None}]
    view = open311.request_view(fold("c1", events), events, policy, detailed=True)
    assert view["media_url"] is None


def test_wechat_names_every_bad_field_with_the_catalogue(policy):
    """Issue #12 §10: validation in stages named only the first stage's problems."""
    from services.intake.wechat import WeChatIn
    errors = WeChatIn(policy=policy).validate({
        "msg_id": "m1", "openid": "o1", "timestamp": "soon", "category": "999", "summary": "路灯不亮",
        "location": {"township": "黑岗乡", "village": "月球村"}, "reporter": {"name": "王五", "phone": "13800138000"}})
    assert set(errors) == {"timestamp", "category", "location"} and set(errors["location"]) == {"village"}, errors
