"""Where cadres, supervisors and on-site notice boards are reached: `minqing notify contact set`.

Addresses are personal data: they go to the vault; this table keeps the vault subject and a masked
form. A recipient is `cadre:<id>`, `supervisor:<township code>` / `supervisor:county`, or
`board:<unit code>`. Without a contact, messages to that recipient go to the log channel.
"""
from __future__ import annotations

import re

from sqlalchemy import Connection, select

from minqing.clock import isoformat
from minqing.county import CountyPolicy
from minqing.db import upsert
from minqing.netpolicy import TargetRefused, check_target
from minqing.personal_data import mask_phone
from minqing.vault import Vault
from services.notify.tables import contacts_table

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,19}$")


class ContactError(ValueError):
    pass


def check_recipient(policy: CountyPolicy, recipient: str) -> None:
    kind, _, ref = recipient.partition(":")
    townships = {t["code"] for t in policy.doc["townships"]}
    if kind == "cadre" and policy.cadre(ref) is not None:
        return
    if kind == "supervisor" and (ref == "county" or ref in townships):
        return
    if kind == "board" and policy.unit(ref) is not None:
        return
    raise ContactError(f"{recipient!r} is not a cadre, supervisor (a township or 'county') or unit board of "
                       f"{policy.county}")


def mask_email(address: str) -> str:
    name, _, domain = address.partition("@")
    return f"{name[:1]}***@{domain}"


def set_contact(conn: Connection, vault: Vault, policy: CountyPolicy, recipient: str, channel: str, address: str,
                at) -> str:
    """Keep `recipient`'s address for `channel`; return its masked form."""
    check_recipient(policy, recipient)
    if channel == "sms":
        if not _PHONE.match(address):
            raise ContactError("--phone: not a phone number")
        fields, masked = {"phone": address}, mask_phone(address)
    elif channel == "email":
        if not _EMAIL.match(address):
            raise ContactError("--email: not an e-mail address")
        fields, masked = {"email": address}, mask_email(address)
    elif channel == "webhook":
        try:
            check_target(address, allow_private=True)
        except TargetRefused as exc:
            raise ContactError(f"--webhook: {exc}") from None
        fields, masked = {"webhook": address}, address.split("//", 1)[-1].split("/", 1)[0]
    else:
        raise ContactError(f"unknown channel {channel!r}")
    subject = vault.store(conn, fields)
    upsert(conn, contacts_table, {"county": policy.county, "recipient": recipient},
           {"channel": channel, "subject": subject, "masked": masked, "updated_at": isoformat(at)})
    return masked


def list_contacts(conn: Connection, county: str) -> list[dict]:
    rows = conn.execute(select(contacts_table).where(contacts_table.c.county == county)
                        .order_by(contacts_table.c.recipient)).mappings().all()
    from minqing.localtime import local_iso, zone_of
    from services.notify.rules import policy_for
    policy = policy_for(conn, county)
    zone = zone_of(policy.doc if policy else None)       # shown to people: the county's time (#18.1)
    return [{"recipient": r["recipient"], "channel": r["channel"], "address": r["masked"],
             "updated_at": local_iso(r["updated_at"], zone)} for r in rows]
