"""Registering a report (受理/登记): one transaction writes the vault entry, the resident's access
(tracking number and PIN) and the `case.reported` event — all of it or none of it."""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from minqing.casefile import stream_of
from minqing.clock import Clock, isoformat
from minqing.db import increment
from minqing.county import CountyPolicy
from minqing.http import ApiError
from minqing.ledger import NO_STREAM, Ledger, Metadata, NewEvent
from minqing.personal_data import mask_free_text, mask_name, mask_phone
from minqing.vault import Vault
from services.intake.tables import case_access_table, tracking_counters_table

PIN_ITERATIONS = 20_000


@dataclass(frozen=True)
class Registered:
    case_id: str
    tracking_no: str
    pin: str
    position: int


def hash_pin(pin: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), salt.encode(), PIN_ITERATIONS).hex()


def next_tracking_no(conn: Connection, policy: CountyPolicy, registered: datetime) -> str:
    """`LJ-20261122-0042`: county prefix, the county's local date, the day's sequence."""
    day = registered.astimezone(ZoneInfo(policy.doc["timezone"])).strftime("%Y%m%d")
    sequence = increment(conn, tracking_counters_table, {"county": policy.county, "day": day}, "last")
    return f"{policy.doc['tracking_prefix']}-{day}-{sequence:04d}"


def register(conn: Connection, ledger: Ledger, vault: Vault, policy: CountyPolicy, report: dict,
             clock: Clock, actor: str) -> Registered:
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
    now = clock.now()
    reported_at = report.get("reported_at") or now
    if reported_at > now:
        raise ApiError(422, "invalid_fields", "reported_at is in the future", {"reported_at": ["in the future"]})

    reporter = report["reporter"]
    subject = vault.store(conn, {"name": reporter["name"].strip(), "phone": reporter["phone"].strip()})
    case_id = str(uuid.uuid4())
    tracking_no = next_tracking_no(conn, policy, now)
    pin = f"{secrets.randbelow(10**6):06d}"
    salt = secrets.token_hex(8)
    conn.execute(case_access_table.insert().values(case_id=case_id, tracking_no=tracking_no,
                                                   pin_hash=hash_pin(pin, salt), salt=salt))
    data = {
        "case_id": case_id, "county": policy.county, "tracking_no": tracking_no, "channel": report["channel"],
        "category": category["code"], "kind": report["kind"], "urgency": report["urgency"],
        "summary": mask_free_text(report["summary"].strip()),
        "location": {"township": place.township, "village": place.village, "hamlet": place.hamlet},
        "reporter": {"subject": subject, "name_masked": mask_name(reporter["name"]),
                     "phone_masked": mask_phone(reporter["phone"])},
        "reported_at": isoformat(reported_at),
    }
    recorded = ledger.append(stream_of(case_id), [NewEvent("case.reported", data,
                             Metadata(actor=actor, county=policy.county, correlation_id=case_id))],
                             NO_STREAM, conn=conn)
    return Registered(case_id, tracking_no, pin, recorded[0].position)
