"""Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) at `/open311/v2/`: the logic, kept
apart from HTTP so it can be checked against the spec on its own. The county id is the spec's
`jurisdiction_id`; JSON and XML, chosen by the resource's extension as the spec says.

Decisions (the spec leaves them to each jurisdiction):
- A service is a category of the county's catalogue: `service_code` is its code, `service_name` its
  name, `keywords` its key, `group` the name of its start tier, `description` its name and, when it
  has one, the responsible department; `type` is realtime. `metadata` is true because routing needs
  the place: the service definition asks for the `township` (required), `village` and `hamlet` as
  single-value lists of the county's places (order 1..3).
- POST builds intake's report (channel open311): summary = description or the category's name,
  address = address_string (or `address_id:<id>`), media_url = the one attachment. Every problem of a
  form is answered at once; each error's code is the status the spec gives for it (404 for an unknown
  service_code, else 400), and the HTTP status is 404 only when nothing else is wrong.
- `service_request_id` is the case id (a UUID: not guessable). The request is registered at once, so
  POST answers with the id (and the resident's tracking number and PIN in `service_notice`); the
  tokens resource answers for those ids too.
- `api_key` is a Minqing token (operator or integrator of the jurisdiction's county). POST needs one.
  GET requests without one show the public fields only: no description, address, coordinates or
  media (residents' home addresses are not public); with one, everything.
- Names, phone, e-mail, device and account ids go to the personal-data vault, never into events.
  Without a phone the request is anonymous (the name is 居民 when a phone comes without one).
- GET requests: `service_request_id` overrides every other argument, as the spec says; otherwise
  the window defaults to the last 90 days and at most 1000 requests. Datetimes are W3C (ISO 8601
  with offset) in the county's time zone. `status_notes` says the Minqing status in plain Chinese.
- Input: the form is read by `read_form` under the door's text rule (minqing.text): a control
  character, a non-character or bytes that are not UTF-8 in any field are refused (400, every field
  named) before anything is looked up; `description` and `address_string` may have line breaks.
  `media_url` must be an http(s) link (minqing.text.link_problem), and only such a link is ever
  shown as `media_url`, whatever older records hold.
- Rendering: JSON is the spec's Spark mapping (arrays of objects; the definition is one object);
  XML is built with ElementTree, None as an empty element, booleans as true/false, and characters
  XML 1.0 forbids dropped (one pasted control character would otherwise break a whole list).
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from minqing.casefile import CaseFile, OPEN_STATUSES
from minqing.clock import parse_instant
from minqing.county import CountyPolicy
from minqing.text import link_problem, text_problem
from services.intake.schemas import _PHONE

FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
MAX_RESULTS = 1000
DEFAULT_WINDOW = timedelta(days=90)
STATUS_NOTES = {"reported": "已受理，正在派单", "assigned": "已派单，承办单位办理中", "accepted": "承办单位已接单办理",
                "returned": "正在重新派单", "reopened": "重新办理中", "resolved": "已办结", "delivered": "办理结果已送达",
                "followed_up": "已回访", "closed": "已结案", "withdrawn": "已撤回", "merged": "已并入同类诉求办理"}


class Open311Error(Exception):
    """One or more problems, answered in the spec's error format with the given HTTP status.

    A problem is a description (its code is then the HTTP status) or a (code, description) pair:
    the spec lets the body's codes be more specific than the HTTP status."""

    def __init__(self, status: int, problems: Iterable[str | tuple[int, str]]):
        self.status = status
        self.problems = [p if isinstance(p, tuple) else (status, p) for p in problems]
        super().__init__("; ".join(d for _, d in self.problems))


def error_items(error: Open311Error) -> list[dict]:
    return [{"code": code, "description": description} for code, description in error.problems]


# ---- services ----------------------------------------------------------------------------------

def services_list(policy: CountyPolicy) -> list[dict]:
    out = []
    for cat in policy.doc["categories"]:
        department = policy.unit(cat["department"]) if cat.get("department") else None
        tier = next((t for t in policy.tiers if t["code"] == cat["start_tier"]), {"name": cat["start_tier"]})
        out.append({"service_code": cat["code"], "service_name": cat["name"],
                    "description": cat["name"] + (f"（{department['name']}负责）" if department else ""),
                    "metadata": True, "type": "realtime", "keywords": cat["key"], "group": tier["name"]})
    return out


def service_definition(policy: CountyPolicy, code: str) -> dict:
    if policy.category(code) is None or policy.category(code)["code"] != code:
        raise Open311Error(404, [f"service_code {code!r} is not a service of this jurisdiction"])
    townships = policy.doc["townships"]
    villages = [(v["code"], f"{t['name']}{v['name']}") for t in townships for v in t["villages"]]
    hamlets = [(h["code"], f"{t['name']}{v['name']}{h['name']}") for t in townships for v in t["villages"]
               for h in v["hamlets"]]
    return {"service_code": code, "attributes": [
        _attribute("township", 1, True, "乡镇/街道 (township)", [(t["code"], t["name"]) for t in townships]),
        _attribute("village", 2, False, "村/社区 (village)", villages),
        _attribute("hamlet", 3, False, "屯/村民小组 (hamlet)", hamlets),
    ]}


def _attribute(code: str, order: int, required: bool, description: str, values: list[tuple[str, str]]) -> dict:
    return {"variable": True, "code": code, "datatype": "singlevaluelist", "required": required,
            "datatype_description": None, "order": order, "description": description,
            "values": [{"key": k, "name": n} for k, n in values]}


# ---- POST requests -----------------------------------------------------------------------------

MULTILINE_FIELDS = ("description", "address_string")


def read_form(raw: bytes) -> dict[str, str]:
    """A form-encoded body as {name: value} (the last of a repeated name), or Open311Error(400)
    naming every field that breaks the door's text rule (minqing.text)."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise Open311Error(400, ["the form is not UTF-8 (percent-encode UTF-8 bytes)"]) from None
    form = dict(pairs)
    problems = []
    for name, value in sorted(form.items()):
        if (why := text_problem(name, multiline=False)) is not None:
            problems.append(f"a field name {why}")
        elif (why := text_problem(value, multiline=name in MULTILINE_FIELDS)) is not None:
            problems.append(f"{name} {why}")
    if problems:
        raise Open311Error(400, problems)
    return form

def _number(form: Mapping[str, str], name: str, low: float, high: float, problems: list) -> float | None:
    raw = form.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value is None or value != value or not low <= value <= high:
        problems.append(f"{name} must be a number between {low:g} and {high:g}")
        return None
    return value


def _place_problem(form: Mapping[str, str], policy: CountyPolicy, township: str) -> str | None:
    """The attribute naming a place this county does not have (codes or names, as intake takes)."""
    village = (form.get("attribute[village]") or "").strip() or None
    hamlet = (form.get("attribute[hamlet]") or "").strip() or None
    try:
        policy.resolve_place(township, village, hamlet)
    except KeyError as exc:
        return (f"attribute[{exc.args[0]}] is not a {exc.args[0]} of {policy.doc['name']} "
                "(see the service definition)")
    return None


def parse_post(form: Mapping[str, str], policy: CountyPolicy) -> dict:
    """The intake report for a POST requests form; every problem at once as one Open311Error."""
    problems: list[str | tuple[int, str]] = []     # a tuple: a code other than 400 (see Open311Error)
    code = (form.get("service_code") or "").strip()
    category = policy.category(code) if code else None
    if not code:
        problems.append("service_code is required")
    elif category is None or category["code"] != code:
        problems.append((404, f"service_code {code!r} is not a service of this jurisdiction"))
    lat = _number(form, "lat", -90, 90, problems)
    lon = _number(form, "long", -180, 180, problems)
    if (lat is None) != (lon is None) and not any(str(p).startswith(("lat ", "long ")) for p in problems):
        problems.append("lat and long must be given together")
    address = (form.get("address_string") or "").strip()
    address_id = (form.get("address_id") or "").strip()
    if lat is None and not address and not address_id:
        problems.append("a location is required: lat and long, address_string or address_id")
    if len(address) > 300 or len(address_id) > 100:
        problems.append("address_string may have at most 300 characters and address_id 100")
    township = (form.get("attribute[township]") or "").strip()
    if not township:
        problems.append("attribute[township] is required (see the service definition)")
    elif (place_problem := _place_problem(form, policy, township)) is not None:
        problems.append(place_problem)
    description = (form.get("description") or "").strip()
    if len(description) > 4000:
        problems.append("description may have at most 4000 characters")
    phone = (form.get("phone") or "").strip()
    if phone and not _PHONE.match(phone):
        problems.append("phone is not a mainland mobile number or a landline with area code")
    media_url = (form.get("media_url") or "").strip()
    if media_url and (why := link_problem(media_url)) is not None:
        problems.append(f"media_url {why}")
    if len(media_url) > 500:
        problems.append("media_url may have at most 500 characters")
    email = (form.get("email") or "").strip()
    if len(email) > 200 or (email and "@" not in email):
        problems.append("email is not an e-mail address")
    if problems:
        raise Open311Error(404 if all(isinstance(p, tuple) for p in problems) else 400, problems)
    name = ((form.get("last_name") or "").strip() + (form.get("first_name") or "").strip())[:50] or "居民"
    contact = {k: (form.get(k) or "").strip()[:100] for k in ("email", "device_id", "account_id") if form.get(k)}
    return {
        "county": policy.county, "channel": "open311", "category": category["code"], "kind": "help",
        "urgency": "normal", "summary": description[:2000] or category["name"],
        "details": description if len(description) > 2000 else None,
        "location": {"township": township, "village": (form.get("attribute[village]") or "").strip() or None,
                     "hamlet": (form.get("attribute[hamlet]") or "").strip() or None,
                     "address": address or (f"address_id:{address_id}" if address_id else None),
                     "coordinates": {"lat": lat, "lon": lon} if lat is not None else None},
        "reporter": {"name": name, "phone": phone, "id_number": None} if phone else None,
        "attachments": [{"ref": media_url, "media_type": None, "name": None}] if media_url else [],
        "reported_at": None, "paper_form_ref": None, "agent": None, "contact": contact,
    }


# ---- GET requests ------------------------------------------------------------------------------

def _w3c(moment: str | None, zone: str) -> str | None:
    return parse_instant(moment).astimezone(ZoneInfo(zone)).isoformat(timespec="seconds") if moment else None


def request_view(case: CaseFile, events: list, policy: CountyPolicy, detailed: bool) -> dict:
    zone = policy.doc["timezone"]
    reported = next((e.data for e in events if e.type == "case.reported"), {})
    resolved = next((e.data for e in reversed(events) if e.type == "case.resolved"), None)
    unit = case.unit or (resolved or {}).get("unit")
    category = policy.category(case.category) if case.category else None
    coordinates = reported.get("coordinates") or {}
    media = (reported.get("attachments") or [{}])[0].get("ref") if reported.get("attachments") else None
    if media is not None and link_problem(media) is not None:    # recorded before links were checked
        media = None
    view = {
        "service_request_id": case.case_id,
        "status": "open" if case.status in OPEN_STATUSES else "closed",
        "status_notes": STATUS_NOTES.get(case.status, case.status),
        "service_name": category["name"] if category else None,
        "service_code": case.category,
        "description": case.summary,
        "agency_responsible": (policy.unit(unit) or {}).get("name") if unit else None,
        "service_notice": "",
        "requested_datetime": _w3c(case.reported_at, zone),
        "updated_datetime": _w3c(events[-1].recorded_at, zone) if events else None,
        "expected_datetime": _w3c(case.resolution_due, zone),
        "address": reported.get("address"),
        "address_id": None,
        "zipcode": None,
        "lat": coordinates.get("lat"),
        "long": coordinates.get("lon"),
        "media_url": media,
    }
    if not detailed:
        for private in ("description", "address", "lat", "long", "media_url"):
            view.pop(private)
    return view


def _instant(args: Mapping[str, str], name: str) -> datetime | None:
    raw = args.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or not 2000 <= moment.year <= 2100:
        raise Open311Error(400, [f"{name} must be a W3C date-time with a time zone between the years 2000 and "
                                 "2100, e.g. 2026-11-23T09:00:00+08:00"])
    return moment


def _listed(args: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in (args.get(name) or "").split(",") if item.strip()]


def parse_filters(args: Mapping[str, str], now: datetime) -> dict:
    """GET requests' filters. `service_request_id` "overrides all other arguments" (spec): with it,
    the others are neither checked nor applied (the dates are then only the default window)."""
    ids = _listed(args, "service_request_id")[:MAX_RESULTS]
    if ids:
        return {"ids": ids, "codes": [], "statuses": [], "start": now - DEFAULT_WINDOW, "end": now}
    statuses = _listed(args, "status")
    if any(s not in ("open", "closed") for s in statuses):
        raise Open311Error(400, ["status must be open, closed, or both separated by a comma"])
    start, end = _instant(args, "start_date"), _instant(args, "end_date")
    if start is None and end is None:
        end = now
    if start is None:
        start = end - DEFAULT_WINDOW
    if end is not None and start > end:
        raise Open311Error(400, ["start_date must not be after end_date"])
    return {"ids": [], "codes": _listed(args, "service_code"), "statuses": statuses, "start": start, "end": end}


# ---- rendering ---------------------------------------------------------------------------------

_XML = {   # kind → (root element, item element); POST's answer and a token's are requests too
    "services": ("services", "service"),
    "service_requests": ("service_requests", "request"),
    "post_result": ("service_requests", "request"),
    "tokens": ("service_requests", "request"),
    "errors": ("errors", "error"),
}
# What XML 1.0 cannot carry even escaped; ElementTree would write it raw and break the document.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_value(parent: ET.Element, key: str, value: Any) -> None:
    element = ET.SubElement(parent, key)
    if isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = _NOT_XML.sub("", str(value))


def _definition_xml(definition: dict) -> ET.Element:
    root = ET.Element("service_definition")
    _xml_value(root, "service_code", definition["service_code"])
    attributes = ET.SubElement(root, "attributes")
    for attr in definition["attributes"]:
        node = ET.SubElement(attributes, "attribute")
        for key, value in attr.items():
            if key == "values":
                values = ET.SubElement(node, "values")
                for v in value:
                    item = ET.SubElement(values, "value")
                    _xml_value(item, "key", v["key"])
                    _xml_value(item, "name", v["name"])
            else:
                _xml_value(node, key, value)
    return root


def render(kind: str, payload: Any, fmt: str) -> tuple[bytes, str]:
    """(body, content type) of `payload` — a list of items, or the service definition — in `fmt`.

    `kind` is services, service_definition, service_requests, post_result, tokens or errors."""
    if kind != "service_definition" and kind not in _XML:
        raise ValueError(f"no Open311 resource {kind!r}")
    if fmt not in FORMATS:
        raise Open311Error(404, [f"format {fmt!r} is not supported; use .json or .xml"])
    if fmt == "json":
        return json.dumps(payload, ensure_ascii=False).encode(), FORMATS[fmt]
    if kind == "service_definition":
        root = _definition_xml(payload)
    else:
        root_name, item_name = _XML[kind]
        root = ET.Element(root_name)
        for item in payload:
            node = ET.SubElement(root, item_name)
            for key, value in item.items():
                _xml_value(node, key, value)
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")).encode(), FORMATS[fmt]


def split_format(name: str) -> tuple[str, str]:
    """`requests.xml` → ("requests", "xml"); a missing or unknown extension is Open311Error(404)."""
    base, dot, fmt = name.rpartition(".")
    if not dot or fmt not in FORMATS:
        raise Open311Error(404, ["add the format to the resource: .json or .xml"])
    return base, fmt
