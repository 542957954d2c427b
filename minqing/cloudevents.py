"""The public form of an event (DESIGN §5, contract): CloudEvents 1.0, structured JSON mode.

Published on the topic exchange `minqing.events` with routing key `<county>.<event type>`. The
`sequence` extension is the global ledger position written as a 20-digit zero-padded string, as the
CloudEvents sequence extension asks for a lexicographically ordered string; `int(sequence)` gives
the position. The `ledgerhash` extension is the event's link in the ledger's hash chain: every
subscriber thereby holds anchors an auditor can check the ledger against (`minqing audit verify
--expect-head POSITION:HASH`). Subscribers never see the vault subject reference of the resident.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any, Mapping

from kombu import serialization

from minqing import contract
from minqing.ledger import RecordedEvent

EXCHANGE = "minqing.events"
DEAD_LETTER_EXCHANGE = "minqing.dead-letter"
DEAD_LETTER_QUEUE = "minqing.dead-letter"
CONTENT_TYPE = "application/cloudevents+json"
SPECVERSION = "1.0"
REQUIRED = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data",
            "sequence", "county")

serialization.register("cloudevents", lambda body: json.dumps(body, ensure_ascii=False),
                       json.loads, content_type=CONTENT_TYPE, content_encoding="utf-8")


SEQUENCE = re.compile(r"[0-9]{1,20}")


class MalformedMessage(ValueError):
    """A broker message that is not a Minqing CloudEvent; it goes to the dead-letter queue."""


def routing_key(event: RecordedEvent) -> str:
    return f"{event.county}.{event.type}"


def subject_of(stream: str) -> str:
    return stream.split("-", 1)[1] if "-" in stream else stream


def format_sequence(position: int) -> str:
    return f"{position:020d}"


def public_data(event_type: str, data: Mapping[str, Any]) -> dict:
    """The event's data as subscribers may see it: without the resident's vault reference."""
    out = copy.deepcopy(dict(data))
    reporter = out.get("reporter")
    if isinstance(reporter, dict):
        reporter.pop("subject", None)
    return out


def to_cloudevent(event: RecordedEvent) -> dict:
    etype = contract.CATALOGUE[event.type]
    return {
        "specversion": SPECVERSION,
        "id": event.event_id,
        "source": f"/minqing/counties/{event.county}",
        "type": etype.cloudevents_type,
        "subject": subject_of(event.stream),
        "time": event.recorded_at,
        "datacontenttype": "application/json",
        "dataschema": f"urn:minqing:schema:{event.type}:{event.schema_version}",
        "data": public_data(event.type, event.data),
        "sequence": format_sequence(event.position),
        "county": event.county,
        "ledgerhash": event.hash,
    }


def parse(body: Any) -> tuple[int, str]:
    """Check a received body is a Minqing CloudEvent; return (position, minqing event type).
    Raises only MalformedMessage, whatever the body."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise MalformedMessage(f"body is not JSON: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise MalformedMessage("body is not a JSON object")
    missing = [k for k in REQUIRED if k not in body]
    if missing:
        raise MalformedMessage(f"missing CloudEvents attributes: {', '.join(missing)}")
    if body["specversion"] != SPECVERSION:
        raise MalformedMessage(f"specversion must be {SPECVERSION!r}")
    not_text = [k for k in REQUIRED if k != "data" and not isinstance(body[k], str)]
    if not_text:
        raise MalformedMessage(f"attributes must be strings: {', '.join(not_text)}")
    if not isinstance(body["data"], dict):
        raise MalformedMessage("data must be a JSON object")
    seq = body["sequence"]
    # ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses
    if not SEQUENCE.fullmatch(seq):
        raise MalformedMessage("sequence must be 1 to 20 ASCII digits")
    etype = body["type"]
    if not etype.startswith("cn.minqing."):
        raise MalformedMessage("type must start with 'cn.minqing.'")
    return int(seq), etype[len("cn.minqing."):]
