"""The WeChat channel: the county's WeChat official account (or mini-program) forwards what a
resident submits to `POST /api/v1/channels/wechat/{county}` as JSON, signed.

- Signature: header `X-Minqing-Signature: sha256=<hex>`, HMAC-SHA256 of the raw body under the
  county's channel secret (`minqing channel secret wechat --county C`, shown once, stored encrypted
  under the vault's master key). A wrong or missing signature is 401 and nothing is read further.
- Freshness: `timestamp` (Unix seconds) within five minutes of now, so a captured request cannot be
  replayed later.
- Idempotency: WeChat pushes a message again when it gets no answer in time; `msg_id` identifies it,
  and a message seen before answers with the case it created (200) instead of a second case.
- The resident's `openid` is personal data: it goes to the vault with their name and phone, never
  into an event.
"""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Connection, select

from minqing import signing
from minqing.text import LineField, TextField
from minqing.vault import Vault
from services.intake.schemas import AttachmentIn, LocationIn, NOT_BLANK, ReporterIn, catalogue_problems
from services.intake.tables import channel_secrets_table, external_refs_table

CHANNEL = "wechat"


class WeChatIn(Schema):
    msg_id = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$",
                                                                   error="must be 1-64 letters, digits, '_' or '-'"))
    openid = LineField(required=True, validate=validate.Length(min=1, max=64))
    timestamp = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=2**40))
    category = LineField(required=True, validate=validate.Length(min=1, max=100))
    kind = LineField(load_default="help", validate=validate.OneOf(("complaint", "inquiry", "help", "suggestion",
                                                                        "dispute", "administrative_service")))
    summary = TextField(required=True, validate=[validate.Length(min=1, max=2000), NOT_BLANK])
    details = TextField(load_default=None, allow_none=True, validate=validate.Length(min=1, max=8000))
    location = fields.Nested(LocationIn, required=True)
    reporter = fields.Nested(ReporterIn, required=True)
    attachments = fields.List(fields.Nested(AttachmentIn), load_default=list, validate=validate.Length(max=10))

    def __init__(self, *args, policy=None, **kwargs):
        """With the county's `policy`, its catalogue (category, places) is checked in the same pass,
        so every bad field is named in one answer."""
        super().__init__(*args, **kwargs)
        self.policy = policy

    @validates_schema(skip_on_field_errors=False)
    def _catalogue(self, data, **_):
        if self.policy is not None and (errors := catalogue_problems(self.policy, data)):
            raise ValidationError(errors)


def new_secret(conn: Connection, vault: Vault, county: str, at: datetime) -> str:
    return signing.new_channel_secret(conn, vault, channel_secrets_table, county, CHANNEL, at)


def verify(conn: Connection, vault: Vault, county: str, body: bytes, header: str | None) -> None:
    signing.require_signature(conn, vault, channel_secrets_table, county, CHANNEL, body, header)


check_fresh = signing.require_fresh


def seen(conn: Connection, county: str, msg_id: str) -> dict | None:
    row = conn.execute(select(external_refs_table).where(external_refs_table.c.channel == CHANNEL,
                                                         external_refs_table.c.county == county,
                                                         external_refs_table.c.ref == msg_id)).first()
    return {"case_id": row.case_id, "tracking_no": row.tracking_no} if row else None


def remember(conn: Connection, county: str, msg_id: str, case_id: str, tracking_no: str) -> None:
    conn.execute(external_refs_table.insert().values(channel=CHANNEL, ref=msg_id, county=county,
                                                     case_id=case_id, tracking_no=tracking_no))


def as_report(county: str, message: dict) -> dict:
    """The message as an intake report of channel `wechat`."""
    return {"county": county, "channel": CHANNEL, "category": message["category"], "kind": message["kind"],
            "urgency": "normal", "summary": message["summary"], "details": message["details"],
            "location": message["location"], "reporter": message["reporter"],
            "attachments": message["attachments"], "reported_at": None, "paper_form_ref": None, "agent": None,
            "contact": {"wechat_openid": message["openid"]}, "external_ref": f"wechat:{message['msg_id']}"}


def utc_from(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)
