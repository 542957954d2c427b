"""Inbound SMS replies: the SMS gateway forwards what residents send to the county's number to
`POST /api/v1/channels/sms/{county}`, signed like every Minqing webhook (minqing/signing.py) under the
county's SMS channel secret (`minqing channel secret sms --county C`, shown once, sealed in the vault).

The body: `msg_id` (the gateway's message id: a repeat push answers as the first did), `from` (the
sender's phone: looked up in the vault, never stored or logged), `text`, `timestamp` (Unix seconds,
within five minutes). A reply code (followup.py: two digits, or the old single digit) answers the sender's open follow-up; anything else is kept
out of the record and answered with `ignored` and the reason, so the gateway does not retry.
"""
from __future__ import annotations

from datetime import datetime

from marshmallow import Schema, fields, validate
from sqlalchemy import Connection, select

from minqing import signing
from minqing.clock import isoformat
from minqing.db import upsert
from minqing.vault import Vault
from services.notify.tables import inbound_messages_table, inbound_secrets_table

CHANNEL = "sms"


class SmsReplyIn(Schema):
    msg_id = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.:-]{1,64}$",
                                                                   error="must be 1-64 letters, digits, '_', '.', ':' or '-'"))
    sender = fields.String(required=True, data_key="from", validate=validate.Regexp(
        r"^\+?[0-9][0-9 -]{4,19}$", error="must be a phone number"))
    text = fields.String(required=True, validate=validate.Length(max=500))
    timestamp = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=2**40))


class SmsReplyOut(Schema):
    outcome = fields.String(required=True, metadata={"description": "rated | ignored"})
    reason = fields.String(allow_none=True)
    case_id = fields.String(allow_none=True)
    rating = fields.String(allow_none=True)
    solved = fields.Boolean(allow_none=True)


def new_secret(conn: Connection, vault: Vault, county: str, at: datetime) -> str:
    return signing.new_channel_secret(conn, vault, inbound_secrets_table, county, CHANNEL, at)


def verify(conn: Connection, vault: Vault, county: str, body: bytes, header: str | None) -> None:
    signing.require_signature(conn, vault, inbound_secrets_table, county, CHANNEL, body, header)


check_fresh = signing.require_fresh


def seen(conn: Connection, county: str, msg_id: str) -> dict | None:
    row = conn.execute(select(inbound_messages_table).where(inbound_messages_table.c.county == county,
                                                            inbound_messages_table.c.msg_id == msg_id)).first()
    return {"outcome": row.outcome.split(":")[0], "reason": row.outcome.partition(":")[2] or None,
            "case_id": row.case_id} if row else None


def remember(conn: Connection, county: str, msg_id: str, outcome: str, reason: str | None, case_id: str | None,
             at: datetime) -> None:
    upsert(conn, inbound_messages_table, {"county": county, "msg_id": msg_id},
           {"outcome": f"{outcome}:{reason}" if reason else outcome, "case_id": case_id, "received_at": isoformat(at)})
