"""HMAC-SHA256 body signatures, one scheme for every signed HTTP body Minqing sends or receives:
header `X-Minqing-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body under a shared secret.

Inbound channels (WeChat to intake, SMS replies to notify) verify it against a per-county channel
secret that each service keeps, sealed under the vault's master key, in its own table (columns
county, channel, secret, created_at); webhook deliveries to subscribers carry it.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import Connection, Table, select

from minqing.clock import isoformat
from minqing.db import upsert
from minqing.http import ApiError

HEADER = "X-Minqing-Signature"
MAX_SKEW_SECONDS = 300      # a signed inbound message older or newer than this is refused (no replays)


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def matches(secret: bytes | None, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of `body` under `secret` (constant-time compare)."""
    if secret is None or not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode("utf-8", "replace"))


def new_channel_secret(conn: Connection, vault, table: Table, county: str, channel: str, at: datetime) -> str:
    """Issue (or replace) a county's secret for an inbound channel; returned once, kept sealed."""
    secret = secrets.token_urlsafe(32)
    upsert(conn, table, {"county": county, "channel": channel},
           {"secret": vault.seal(secret.encode()), "created_at": isoformat(at)})
    return secret


def require_signature(conn: Connection, vault, table: Table, county: str, channel: str, body: bytes,
                      header: str | None) -> None:
    """401 unless `header` signs `body` under the county's secret for `channel`."""
    row = conn.execute(select(table.c.secret).where(table.c.county == county, table.c.channel == channel)).first()
    if not matches(vault.unseal(row.secret) if row else None, body, header):
        raise ApiError(401, "bad_signature", f"the {HEADER} header does not match the body",
                       {HEADER: ["missing or wrong (HMAC-SHA256 of the body, hex, as sha256=…)"]})


def require_fresh(timestamp: int, now: datetime) -> None:
    if abs(now.timestamp() - timestamp) > MAX_SKEW_SECONDS:
        raise ApiError(422, "invalid_fields", "the message is too old or from the future",
                       {"timestamp": [f"must be within {MAX_SKEW_SECONDS} seconds of now (Unix seconds)"]})
