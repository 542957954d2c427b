"""Open311 GeoReport v2 over intake's HTTP entrypoints: the routes' shared options and answers in the
spec's own format (errors included), in the format the resource asked for (services/intake/open311.py
holds the translation itself)."""
from __future__ import annotations

import functools

from werkzeug.wrappers import Response

from minqing import access
from minqing.http import ApiError
from services.intake import open311

O311_ERRORS = {"type": "array", "items": {"type": "object", "required": ["code", "description"],
                                          "properties": {"code": {"type": "integer"}, "description": {"type": "string"}}}}
OPEN311_LIMIT = access.RateLimiter(rate_per_second=10.0, burst=50)    # per client address
OPEN311 = dict(action="public", limiter=OPEN311_LIMIT, media_types=("application/json", "text/xml"),
               error_schema=O311_ERRORS, errors=(403,), on_error=lambda exc, values: _o311_api_error(exc, values))


def _o311_format(values: dict) -> str:
    return next((v.rpartition(".")[2] for v in values.values() if v.rpartition(".")[2] in open311.FORMATS), "json")


def _o311_error(error: open311.Open311Error, values: dict) -> Response:
    body, content_type = open311.render("errors", open311.error_items(error), _o311_format(values))
    return Response(body, status=error.status, content_type=content_type)


def _o311_api_error(exc: ApiError, values: dict) -> Response:
    """Minqing's own refusals (rate limit, bad input) in the spec's error format."""
    problems = [f"{field}: {'; '.join(msgs)}" for field, msgs in exc.fields.items()] or [exc.message]
    return _o311_error(open311.Open311Error(400 if exc.status in (400, 422) else exc.status, problems), values)


def _open311(handler):
    """Answer Open311 problems in the spec's error format, in the format the resource asked for."""
    @functools.wraps(handler)
    def wrapper(self, request, principal, **values):
        try:
            return handler(self, request, principal, **values)
        except open311.Open311Error as exc:
            return _o311_error(exc, values)
    return wrapper


def _o311(kind: str, payload, fmt: str, status: int = 200) -> Response:
    body, content_type = open311.render(kind, payload, fmt)
    return Response(body, status=status, content_type=content_type)
