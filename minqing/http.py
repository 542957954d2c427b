"""JSON over HTTP for every service: one error shape, never a stack trace, never an unplanned 5xx.

Errors answer `{"error": {"code", "message", "fields": {field: [reasons]}}}`.

Every body and query string passes the door's text and number rule (minqing.text) before its
schema, and the problems of both are answered together: one 422 naming every bad field. A database
or broker that cannot be reached is 503 `unavailable` with `Retry-After`, not a 500: an outage, not
a bug; the client sends the request again (a report with its Idempotency-Key, so it is not doubled).
"""
from __future__ import annotations

import functools
import json
import logging
import uuid
from typing import Any, Callable, Mapping

from amqp.exceptions import ConnectionError as AmqpConnectionError
from kombu.exceptions import OperationalError as BrokerError
from marshmallow import Schema, ValidationError, fields
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.wrappers import Response

from minqing import text

log = logging.getLogger("minqing.http")

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = 5


class _ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", keys=fields.String(), values=fields.List(fields.String()))


class ErrorOut(Schema):
    """Every error answer: {"error": {code, message, fields}}."""
    error = fields.Nested(_ErrorBody, required=True)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, indent=None), status=status,
                    mimetype="application/json", headers=headers)


def error_response(error: ApiError) -> Response:
    body: dict[str, Any] = {"code": error.code, "message": text.printable(error.message)}
    if error.fields:    # a path or reason may quote what was sent: never echo a character we refuse
        body["fields"] = {text.printable(k): [text.printable(m) for m in v] for k, v in error.fields.items()}
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if error.status == 503 else None
    return json_response(error.status, {"error": body}, headers)


def flatten_errors(messages: Any, root: str = "body", prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error messages as {"a.b.0.c": [reasons]}; errors of the whole go to `root`."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            path = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            for p, msgs in flatten_errors(value, root, path).items():
                out.setdefault(p, []).extend(msgs)
    elif isinstance(messages, list):
        for m in messages:
            if isinstance(m, (Mapping, list)):
                for p, msgs in flatten_errors(m, root, prefix).items():
                    out.setdefault(p, []).extend(msgs)
            else:
                out.setdefault(prefix or root, []).append(str(m))
    else:
        out[prefix or root] = [str(messages)]
    return out


def read_body(request) -> bytes:
    """The raw request body, refused (413) past MAX_BODY_BYTES."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes")
    return raw


def load_json(raw: bytes, schema: Schema, *, optional: bool = False) -> dict:
    """Parse and validate a JSON body, or raise ApiError naming every bad field. With `optional`, an
    empty body stands for `{}`. 400 for what is not a JSON object (or nests deeper than
    minqing.text.MAX_DEPTH); 422 for bad fields — the door's text and number rule and the schema's
    together, so one answer names them all."""
    if not raw and optional:
        raw = b"{}"
    if not raw:
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object",
                       {"body": ["required"]})
    try:
        data = text.parse_json(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the request body is not UTF-8: {exc}", {"body": ["not UTF-8"]})
    except text.BadJson as exc:
        raise ApiError(400, "invalid_json", f"the request body is {exc}", {"body": [str(exc)]})
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object", {"body": ["not an object"]})
    return _validated(schema, data, text.problems(data), "body", "some fields are missing or invalid")


def _validated(schema: Schema, data: dict, refused: dict[str, list[str]], root: str, message: str) -> dict:
    """`schema.load(data)` unless the door refused something; either way every problem is named."""
    try:
        loaded = schema.load(data)
        errors: dict[str, list[str]] = {}
    except ValidationError as exc:
        errors = flatten_errors(exc.messages, root=root)
    if refused or errors:   # the door's reason wins for a path it refused (the schema's would mislead)
        raise ApiError(422, "invalid_fields", message, {**errors, **refused})
    return loaded


def read_json(request, schema: Schema, *, optional: bool = False) -> dict:
    return load_json(read_body(request), schema, optional=optional)


def read_query(request, schema: Schema) -> dict:
    """Validate query parameters (single values, one line each), or raise ApiError naming every bad one."""
    args = dict(request.args.items())
    return _validated(schema, args, text.problems(args, multiline=False), "query",
                      "some query parameters are missing or invalid")


def api(handler: Callable) -> Callable:
    """Wrap a nameko http handler: ApiError → its JSON answer; the database or broker out of reach →
    503 `unavailable` with Retry-After; anything else unexpected → a JSON 500 with a reference that
    is also in the log (a bug whenever it shows up)."""
    @functools.wraps(handler)
    def wrapper(self, request, *args, **kwargs):
        try:
            return handler(self, request, *args, **kwargs)
        except ApiError as exc:
            return error_response(exc)
        except Exception as exc:
            what = unavailable(exc)
            if what is not None:
                log.warning("%s: the %s is unavailable (%s)", handler.__name__, what, type(exc).__name__)
                return error_response(ApiError(503, "unavailable", f"the {what} cannot be reached just now; "
                                               f"try again in {RETRY_AFTER_SECONDS} seconds"))
            reference = uuid.uuid4().hex[:12]
            log.exception("unhandled error in %s (reference %s)", handler.__name__, reference)
            return error_response(ApiError(500, "internal_error",
                                           f"an internal error occurred; reference {reference}"))
    return wrapper


def unavailable(exc: BaseException) -> str | None:
    """What cannot be reached when `exc` says so (a transient outage: 503), else None.

    SQLAlchemy's OperationalError covers lost and refused connections (and SQLite's busy lock),
    InterfaceError a connection closed under us; any DBAPIError whose connection was invalidated is
    a disconnect too. kombu's OperationalError and py-amqp's connection errors are the broker's; a
    refused or reset socket elsewhere is some other backing service's."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return "database"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "database"
    if isinstance(exc, (BrokerError, AmqpConnectionError)):
        return "message broker"
    if isinstance(exc, ConnectionError):
        return "backing service"
    return None
