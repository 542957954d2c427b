"""The hash chain's text: how an event's fields are encoded (canonical JSON) and hashed into the chain.

The ledger (minqing.ledger, and the stored function minqing.ledger_pg byte for byte), the audit's
`verify` and the in-memory ledger all encode through these, so a chain written by one is verified by
the others.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

# One encoder for every call: json.dumps with these options builds a new JSONEncoder each time.
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical_json(value: Any) -> str:
    return _canonical(value)


# How canonical_json (json.dumps with ensure_ascii=False) encodes one string: the same function.
json_string = json.encoder.encode_basestring


def chain_hash(prev_hash: str, position: int, event_id: str, stream: str, version: int, type_: str,
               schema_version: int, data_text: str, metadata_text: str, recorded_at: str) -> str:
    """The hash that links an event to its predecessor; audit recomputes it from the stored row."""
    body = canonical_json([position, event_id, stream, version, type_, schema_version,
                           data_text, metadata_text, recorded_at])
    return hashlib.sha256(f"{prev_hash}|{body}".encode("utf-8")).hexdigest()
