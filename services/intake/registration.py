"""Registering a report (受理/登记): one transaction writes the vault entry, the resident's access
(tracking number and PIN) and the `case.reported` event — all of it or none of it."""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from minqing.casefile import fold, stream_of
from minqing.clock import Clock, isoformat
from minqing.db import increment
from minqing.county import CountyPolicy
from minqing.http import ApiError
from minqing.offload import offload
from minqing.pins import seal_pin
from minqing.ledger import ANY, NO_STREAM, Ledger, Metadata, NewEvent, StreamWrite
from minqing.personal_data import mask_free_text, mask_name, mask_phone
from minqing.vault import Vault
from services.intake.duplicates import find_original, reports_of, spot_of
from services.intake.projection import most_specific_place
from services.intake.tables import case_access_table, open_cases_table, tracking_counters_table

PIN_ITERATIONS = 20_000


@dataclass(frozen=True)
class Registered:
    case_id: str
    tracking_no: str
    pin: str
    position: int
    merged_into: str | None = None


@dataclass(frozen=True)
class Credentials:
    """The resident's PIN, and its salted hash as intake keeps it."""
    pin: str
    salt: str
    pin_hash: str


def hash_pin(pin: str, salt: str) -> str:
    """Deliberately slow (~5 ms), so it runs off the service's event loop (minqing.offload) — and
    therefore yields: never call it inside a write transaction (minqing.db, issue #12.2)."""
    return offload(hashlib.pbkdf2_hmac, "sha256", pin.encode(), salt.encode(), PIN_ITERATIONS).hex()


def new_credentials() -> Credentials:
    """A fresh six-digit PIN and its hash, made before the registration's transaction begins."""
    pin, salt = f"{secrets.randbelow(10**6):06d}", secrets.token_hex(8)
    return Credentials(pin, salt, hash_pin(pin, salt))


def next_tracking_no(conn: Connection, policy: CountyPolicy, registered: datetime) -> str:
    """`LJ-20261122-0042`: county prefix, the county's local date, the day's sequence."""
    day = registered.astimezone(ZoneInfo(policy.doc["timezone"])).strftime("%Y%m%d")
    sequence = increment(conn, tracking_counters_table, {"county": policy.county, "day": day}, "last")
    return f"{policy.doc['tracking_prefix']}-{day}-{sequence:04d}"


def _check_agent(policy: CountyPolicy, report: dict, principal_cadre: str | None) -> str | None:
    """A proxy-agent report names the 代办员 who took it: the reporting cadre, or the `agent` given."""
    if report["channel"] != "proxy_agent":
        return None
    agent = report.get("agent") or principal_cadre
    if agent is None:
        raise ApiError(422, "invalid_fields", "a proxy_agent report names its agent",
                       {"agent": ["required: the cadre id of the 代办员 who took the report"]})
    if not any(c["id"] == agent for c in policy.doc["cadres"]):
        raise ApiError(422, "invalid_fields", "the agent is not a cadre of this county",
                       {"agent": [f"{agent!r} is not a cadre of {policy.doc['name']}"]})
    return agent


def register(conn: Connection, ledger: Ledger, vault: Vault, policy: CountyPolicy, report: dict,
             clock: Clock, actor: str, principal_cadre: str | None = None, *,
             credentials: Credentials) -> Registered:
    """Register `report` in the caller's write transaction `conn`. Nothing in here may yield to
    other green threads (no thread pool, no network): the transaction holds SQLite's write lock."""
    loc = report["location"]
    try:
        place = policy.resolve_place(loc["township"], loc.get("village"), loc.get("hamlet"))
    except KeyError as exc:
        field = exc.args[0]
        raise ApiError(422, "unknown_place", "the location is not a place of this county",
                       {f"location.{field}": [f"{loc.get(field)!r} is not a {field} of {policy.doc['name']} "
                                              f"(see GET /api/v1/counties/{policy.county})"]})
    category = policy.category(report["category"])
    if category is None:
        raise ApiError(422, "unknown_category", "the category is not in this county's catalogue",
                       {"category": [f"{report['category']!r} is not a category code of {policy.doc['name']}"]})
    agent = _check_agent(policy, report, principal_cadre)
    now = clock.now()
    reported_at = report.get("reported_at") or now
    if reported_at > now:
        raise ApiError(422, "invalid_fields", "reported_at is in the future", {"reported_at": ["in the future"]})

    reporter = report.get("reporter")
    subject = None
    if reporter is not None:
        kept = {"name": reporter["name"].strip(), "phone": reporter["phone"].strip()}
        if reporter.get("id_number"):
            kept["id_number"] = reporter["id_number"].strip().upper()
        kept.update({k: v for k, v in (report.get("contact") or {}).items() if v})
        subject = vault.store(conn, kept)
    case_id = str(uuid.uuid4())
    location = {"township": place.township, "village": place.village, "hamlet": place.hamlet}
    masked_address = mask_free_text(loc["address"].strip()) if loc.get("address") else None
    place_code = most_specific_place(location)
    spot, coordinates = spot_of(masked_address), loc.get("coordinates")   # as a rebuild will see it
    original = find_original(conn, policy, category["code"], subject, place_code, spot, coordinates, reported_at)
    conn.execute(open_cases_table.insert().values(
        case_id=case_id, county=policy.county, category=category["code"], subject=subject, place=place_code,
        spot=spot, lat=(coordinates or {}).get("lat"), lon=(coordinates or {}).get("lon"),
        reported_at=isoformat(reported_at), open=original is None, merged_into=original))
    # The day's tracking counter is a row every report of the county waits for until commit: take it last.
    tracking_no = next_tracking_no(conn, policy, now)
    conn.execute(case_access_table.insert().values(case_id=case_id, tracking_no=tracking_no,
                                                   pin_hash=credentials.pin_hash, salt=credentials.salt))
    seal_pin(conn, vault, subject, case_id, credentials.pin)   # for the receipt notify sends (minqing.pins)
    data = {
        "case_id": case_id, "county": policy.county, "tracking_no": tracking_no, "channel": report["channel"],
        "category": category["code"], "kind": report["kind"], "urgency": report["urgency"],
        "summary": mask_free_text(report["summary"].strip()),
        "location": location,
        "reporter": {"subject": subject,
                     "name_masked": mask_name(reporter["name"]) if reporter else "",
                     "phone_masked": mask_phone(reporter["phone"]) if reporter else ""},
        "reported_at": isoformat(reported_at),
    }
    optional = {
        "details": mask_free_text(report["details"].strip()) if report.get("details") else None,
        "address": masked_address,
        "coordinates": loc.get("coordinates"),
        "attachments": [{"ref": a["ref"], "media_type": a.get("media_type"),
                         "name": mask_free_text(a["name"]) if a.get("name") else None}
                        for a in report.get("attachments") or []],
        "paper_form_ref": report.get("paper_form_ref"),
        "agent": agent,
        "external_ref": report.get("external_ref"),
    }
    data.update({k: v for k, v in optional.items() if v})
    meta = Metadata(actor=actor, county=policy.county, correlation_id=case_id)
    events = [NewEvent("case.reported", data, meta)]
    writes = [StreamWrite(stream_of(case_id), events, NO_STREAM)]
    if original is not None:
        same = "the same resident" if subject and _subject_of(conn, original) == subject else "the same spot"
        events.append(NewEvent("case.merged", {"case_id": case_id, "into_case_id": original,
                                               "reason": f"a repeat of an open case of category {category['code']} "
                                                         f"from {same}"}, meta))
        earlier = fold(original, ledger.read_stream(stream_of(original), conn=conn))
        if earlier.urgency != "urgent":
            writes.append(StreamWrite(stream_of(original), [NewEvent("case.urgency_raised", {
                "case_id": original, "urgency": "urgent", "reports": reports_of(conn, original),
                "merged_case_id": case_id}, Metadata(actor=actor, county=policy.county, correlation_id=original))], ANY))
    recorded = ledger.append_many(writes, conn=conn)
    return Registered(case_id, tracking_no, credentials.pin, recorded[0].position, original)


def _subject_of(conn: Connection, case_id: str) -> str | None:
    return conn.execute(select(open_cases_table.c.subject).where(open_cases_table.c.case_id == case_id)).scalar()
