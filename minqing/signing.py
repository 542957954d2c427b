"""HMAC-SHA256 body signatures, one scheme for every signed HTTP body Minqing sends or receives:
header `X-Minqing-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body under a shared secret.

Inbound channels (WeChat, SMS replies) verify it; webhook deliveries to subscribers carry it.
"""
from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Minqing-Signature"


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def matches(secret: bytes | None, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of `body` under `secret` (constant-time compare)."""
    if secret is None or not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode("utf-8", "replace"))
