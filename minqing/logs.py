"""Logging for every Minqing process: one JSON object per line on stderr (journald, `.run/logs/NAME.log`).

    {"ts": "2026-12-01T08:00:00.123Z", "level": "INFO", "process": "routing", "logger": "minqing.events",
     "message": "routing.assignments applied case.reported", "case_id": "…", "stream": "case-…",
     "event_id": "…", "event_type": "case.reported", "position": 42, "correlation_id": "…"}

The correlation fields — `case_id`, `stream`, `event_id`, `event_type`, `position`, `correlation_id`,
`consumer` — come from `extra=` or from the context a piece of work runs in (`about(...)`), so one
report can be followed across every process: `grep '"case_id": "<id>"' .run/logs/*.log` (or
`journalctl -u 'minqing*' -o cat | jq 'select(.case_id == "<id>")'`) shows intake recording it, the
relay publishing each of its events, and every service applying them.

The `minqing.events` logger writes one line per event recorded, published or applied. It is on in the
long-running processes (`setup_logging`) and quiet in one-off commands (a rebuild replays thousands).

Log lines never carry raw personal data (principle 8): code logs masked forms and references only —
ids, types and positions, never an event's data; the correlation fields are ids.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from typing import Iterator

FIELDS = ("case_id", "stream", "event_id", "event_type", "position", "correlation_id", "consumer")
EVENTS = logging.getLogger("minqing.events")
EVENTS.setLevel(logging.WARNING)            # one-off commands: quiet; setup_logging turns it on

_CONTEXT: contextvars.ContextVar[dict] = contextvars.ContextVar("minqing_log_context", default={})


class _Quiet(logging.Filter):
    """Drops access-log lines whose query string could carry a PIN or token."""

    def filter(self, record):
        msg = record.getMessage()
        return "pin=" not in msg and "token=" not in msg


def event_fields(event) -> dict:
    """The correlation fields of a recorded event (minqing.ledger.RecordedEvent): ids only."""
    fields = {"stream": event.stream, "event_id": event.event_id, "event_type": event.type,
              "position": event.position, "correlation_id": getattr(event.metadata, "correlation_id", None)}
    if event.stream.startswith("case-"):
        fields["case_id"] = event.stream[len("case-"):]
    return {k: v for k, v in fields.items() if v is not None}


@contextlib.contextmanager
def about(**fields) -> Iterator[None]:
    """Every line logged inside (in this thread or green thread) carries these correlation fields."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str):
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "process": self.process, "logger": record.name,
               "message": record.getMessage()}
        out.update(_CONTEXT.get())
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["error"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, role: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(role))
    handler.addFilter(_Quiet())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    EVENTS.setLevel(level)
    for noisy in ("amqp", "kombu", "nameko", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
