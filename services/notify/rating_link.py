"""The signed rating link (issue #14 §8): sent with the result (统一送达) and with each 回访 ask, it takes
the resident to the console's page `/console/rate/<token>`, where they answer the two follow-up
questions instead of replying by SMS.

The token names only the case, the ledger position of the `case.resolved` whose result it rates and
when it expires — no personal data — and is signed with HMAC-SHA256 under
`MINQING_RATING_LINK_SECRET` (services/notify/settings.py):

    <case_id>.<resolved position, hex>.<expiry, Unix seconds, hex>.<first 128 bits of the HMAC, base64url>

Binding the link to one resolution means a link sent before a reopening cannot rate the next result.
It expires when the county's follow-up window is over: `after_minutes` + `attempts` ×
`reply_within_minutes` after the result, plus a day's grace for a result held back by quiet hours or
a retry (EXPIRY_GRACE). What may still be answered is decided by the case itself (notify's
followup.record_follow_up), not by the link: the expiry only bounds how long a leaked link is worth
anything.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from minqing.clock import parse_instant

EXPIRY_GRACE = timedelta(days=1)
PATH = "/console/rate/"
_TOKEN = re.compile(r"^([0-9a-fA-F-]{1,64})\.([0-9a-f]{1,12})\.([0-9a-f]{1,12})\.([A-Za-z0-9_-]{22})$")


class LinkRefused(Exception):
    """A token that is not ours (`forged`: malformed, tampered, or signed under another secret) or
    whose time is over (`expired`)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Link:
    case_id: str
    resolved_position: int
    expires: datetime


def _mac(secret: bytes, case_id: str, position: int, expires: int) -> str:
    digest = hmac.new(secret, f"minqing-rate-v1|{case_id}|{position}|{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def sign(secret: bytes, case_id: str, resolved_position: int, expires: datetime) -> str:
    seconds = int(expires.timestamp())
    return f"{case_id}.{resolved_position:x}.{seconds:x}.{_mac(secret, case_id, resolved_position, seconds)}"


def verify(secret: bytes, token: str, now: datetime) -> Link:
    """The link a token stands for; LinkRefused('forged') or ('expired') otherwise. The signature is
    checked before the expiry, so an expired answer is only ever given for a link we made."""
    match = _TOKEN.match(token or "")
    if not match:
        raise LinkRefused("forged")
    case_id, position_hex, expires_hex, mac = match.groups()
    position, seconds = int(position_hex, 16), int(expires_hex, 16)
    if not hmac.compare_digest(mac, _mac(secret, case_id, position, seconds)):
        raise LinkRefused("forged")
    expires = datetime.fromtimestamp(seconds, timezone.utc)
    if now >= expires:
        raise LinkRefused("expired")
    return Link(case_id, position, expires)


def expiry(resolved_at: str | datetime, follow_up: dict) -> datetime:
    """When a link to the result resolved at `resolved_at` stops working: the end of the county's
    follow-up window (`notify.follow_up`) plus EXPIRY_GRACE."""
    start = parse_instant(resolved_at) if isinstance(resolved_at, str) else resolved_at
    window = follow_up["after_minutes"] + follow_up["attempts"] * follow_up["reply_within_minutes"]
    return start + timedelta(minutes=window) + EXPIRY_GRACE


def url_for(secret: bytes | None, public_url: str, case_id: str, history, follow_up: dict) -> str:
    """The link to rate the case's latest result ('' when links are off or nothing is resolved)."""
    if not secret:
        return ""
    resolved = [e for e in history if e.type == "case.resolved"]
    if not resolved:
        return ""
    last = resolved[-1]
    token = sign(secret, case_id, last.position, expiry(last.recorded_at, follow_up))
    return public_url.rstrip("/") + PATH + token
