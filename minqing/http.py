"""JSON over HTTP for every service: one error shape, never a stack trace, never an unplanned 5xx.

Errors answer `{"error": {"code", "message", "fields": {field: [reasons]}}}`.
"""
from __future__ import annotations

import functools
import json
import logging
import uuid
from typing import Any, Callable, Mapping

from marshmallow import Schema, ValidationError, fields
from werkzeug.wrappers import Response

log = logging.getLogger("minqing.http")

MAX_BODY_BYTES = 64 * 1024


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
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.fields:
        body["fields"] = error.fields
    return json_response(error.status, {"error": body})


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
    empty body stands for `{}`."""
    if not raw and optional:
        raw = b"{}"
    if not raw:
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object",
                       {"body": ["required"]})
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}",
                       {"body": ["not valid JSON"]})
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object", {"body": ["not an object"]})
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid_fields", "some fields are missing or invalid", flatten_errors(exc.messages))


def read_json(request, schema: Schema, *, optional: bool = False) -> dict:
    return load_json(read_body(request), schema, optional=optional)


def read_query(request, schema: Schema) -> dict:
    """Validate query parameters (single values), or raise ApiError naming every bad one."""
    try:
        return schema.load(dict(request.args.items()))
    except ValidationError as exc:
        raise ApiError(422, "invalid_fields", "some query parameters are missing or invalid",
                       flatten_errors(exc.messages, root="query"))


def api(handler: Callable) -> Callable:
    """Wrap a nameko http handler: ApiError → its JSON answer; anything unexpected → a JSON 500 with
    a reference that is also in the log (the only 5xx there is, and a bug whenever it shows up)."""
    @functools.wraps(handler)
    def wrapper(self, request, *args, **kwargs):
        try:
            return handler(self, request, *args, **kwargs)
        except ApiError as exc:
            return error_response(exc)
        except Exception:
            reference = uuid.uuid4().hex[:12]
            log.exception("unhandled error in %s (reference %s)", handler.__name__, reference)
            return error_response(ApiError(500, "internal_error",
                                           f"an internal error occurred; reference {reference}"))
    return wrapper
