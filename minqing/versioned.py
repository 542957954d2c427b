"""Versioned configuration documents on the ledger (principle 7): a county policy, a county's
assessment rules. Publishing appends a new version unless the latest one is identical; decisions
name the version they applied."""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

from minqing.ledger import ConcurrencyError, Ledger, Metadata, NewEvent, canonical_json


def digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def publish(ledger: Ledger, stream: str, event_type: str, county: str, field: str, document: dict,
            actor: str) -> tuple[int, bool]:
    """Append `event_type` {county, version, digest, <field>: document} to `stream` unless the latest
    version has the same digest; return (version, whether it was published now)."""
    document_digest = digest(document)
    while True:
        history = ledger.read_stream(stream)
        published = [e for e in history if e.type == event_type]
        if published and published[-1].data["digest"] == document_digest:
            return published[-1].data["version"], False
        version = len(published) + 1
        event = NewEvent(event_type, {"county": county, "version": version, "digest": document_digest,
                                      field: document}, Metadata(actor=actor, county=county))
        try:
            ledger.append(stream, [event], expected_version=history[-1].version if history else 0)
            return version, True
        except ConcurrencyError:
            continue        # someone published meanwhile: compare with theirs
