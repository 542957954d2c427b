"""Every HTTP endpoint of every service is declared with `route`, which is where access control is
enforced (authentication, the role rule for its action, rate limiting) and where the OpenAPI
documents come from — so an endpoint cannot exist without an access rule and a documented entry.

The handler receives the authenticated `Principal` (None for public actions) after the request;
object-level checks (this case, this unit) are the handler's, through `minqing.access`.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer

from minqing import access, config
from minqing.db import read_transaction
from minqing.http import MAX_BODY_BYTES, ApiError, api


class _ChunkedBody:
    """WSGI middleware: a chunked request body (no Content-Length) is read here, up to MAX_BODY_BYTES,
    and handed on as an ordinary body with a Content-Length; a longer one is answered 413 at once (and
    the connection closed, the rest unread).

    Why: eventlet's server decodes chunked input but does not set `wsgi.input_terminated`, so werkzeug
    treats a body without Content-Length as empty — a chunked report would be read as `{}`."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        import io
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not environ.get("CONTENT_LENGTH"):
            try:
                body = environ["wsgi.input"].read(MAX_BODY_BYTES + 1)
            except (OSError, ValueError):
                return self._refuse(start_response, 400, "bad_request", "the chunked request body is malformed")
            if len(body) > MAX_BODY_BYTES:
                return self._refuse(start_response, 413, "body_too_large",
                                    f"the request body exceeds {MAX_BODY_BYTES} bytes")
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            del environ["HTTP_TRANSFER_ENCODING"]
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(start_response, status: int, code: str, message: str):
        import json
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        reason = {400: "BAD REQUEST", 413: "REQUEST ENTITY TOO LARGE"}[status]
        start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(body))), ("Connection", "close")])
        return [body]


class _WebServer(WebServer):
    """nameko's web server (one per service container), with chunked bodies read and bounded, and
    every request timed and counted by route template (minqing.httpmetrics)."""

    def get_wsgi_app(self):
        from minqing.httpmetrics import RouteMetrics, matcher
        return RouteMetrics(_ChunkedBody(super().get_wsgi_app()), self.container.service_name,
                            matcher(self.make_url_map()))


class _HttpEntrypoint(HttpRequestHandler):
    server = _WebServer()


http = _HttpEntrypoint.decorator


@dataclass(frozen=True)
class Route:
    method: str
    path: str          # werkzeug rule, e.g. /api/v1/cases/<string:case_id>
    action: str        # a key of minqing.access.POLICY
    summary: str
    rate_limited: bool
    body: Any = None           # marshmallow schema of the JSON body (or "form" for form-encoded)
    query: Any = None          # marshmallow schema of the query parameters
    response: Any = None       # marshmallow schema of the success answer
    status: int = 200          # the success status
    errors: tuple = ()         # further statuses the handler answers (409, …)
    media_types: tuple = ("application/json",)
    extra_success: tuple = ()  # other success statuses (e.g. 200 for a repeat of a 201)
    error_schema: Any = "Error"  # what error answers look like (Open311 has its own format)

    @property
    def openapi_path(self) -> str:
        return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", self.path)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"<(?:[a-z]+:)?([a-z_]+)>", self.path)


def route(method: str, path: str, *, action: str, summary: str, limiter: access.RateLimiter | None = None,
          body=None, query=None, response=None, status: int = 200, errors: tuple = (),
          media_types: tuple = ("application/json",), extra_success: tuple = (), error_schema: Any = "Error",
          on_error: Callable | None = None) -> Callable:
    """Declare an endpoint. `on_error(exc, path_values)` renders an ApiError in the endpoint's own
    error format (Open311's), for errors raised before or inside the handler alike."""
    if action not in access.POLICY:
        raise ValueError(f"no access rule for action {action!r}: add it to minqing.access.POLICY")

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def handler(self, request, **path_values):
            if any("\x00" in v for v in path_values.values()) or any("\x00" in v for v in request.args.values()):
                raise ApiError(400, "bad_request", "the path or query contains a NUL character")
            principal = None
            if action != "public":
                with read_transaction(self.ledger.engine) as conn:
                    principal = access.authenticate(conn, request.headers.get("Authorization"))
                access.authorize(principal, action)
            if limiter is not None:
                key = principal.token_id if principal else access.client_key(request, config.gateway_secret())
                if not limiter.allow(key):
                    raise access.too_many()
            return fn(self, request, principal, **path_values)

        if on_error is not None:
            inner = handler

            @functools.wraps(fn)
            def handler(self, request, **path_values):    # noqa: F811
                try:
                    return inner(self, request, **path_values)
                except ApiError as exc:
                    return on_error(exc, path_values)
        wrapped = api(handler)
        wrapped.minqing_route = Route(method, path, action, summary, limiter is not None, body, query, response,
                                      status, tuple(errors), tuple(media_types), tuple(extra_success), error_schema)
        return http(method, path)(wrapped)
    return decorate


def routes_of(service_cls) -> list[Route]:
    return [getattr(service_cls, name).minqing_route for name in dir(service_cls)
            if hasattr(getattr(service_cls, name, None), "minqing_route")]


GATEWAY_ROUTES = [
    Route("GET", "/health", "public", "Health of the whole stack: services, ledger, broker, relay", False,
          errors=(503,)),
    Route("GET", "/api/v1/openapi.json", "public", "This document", False),
]

_ERROR_TEXT = {400: "the body or a parameter is not well-formed", 401: "no valid token", 403: "role or county not allowed",
               404: "no such resource (or not visible to this principal)", 405: "method not allowed",
               409: "the action no longer applies to the case's current state", 413: "body too large",
               422: "invalid or unknown fields, each named", 429: "rate limited or locked out",
               503: "a part of the stack is not healthy"}


def _operation(owner: str, r: Route) -> dict:
    op: dict = {
        "operationId": f"{owner}.{r.method.lower()}.{r.openapi_path}",
        "summary": r.summary,
        "x-minqing-service": owner,
        "x-minqing-action": r.action,
        "x-minqing-roles": sorted(access.POLICY[r.action]),
        "security": [] if r.action == "public" else [{"bearer": []}],
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                       for p in r.path_params],
    }
    if r.query is not None:
        op["parameters"].append({"in": "query", "schema": r.query})
    if r.body == "form":
        op["requestBody"] = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
    elif r.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": r.body}}}
    success = {"description": "success",
               "content": {m: {"schema": r.response if (r.response is not None and m == "application/json") else {}}
                           for m in r.media_types}}
    codes = {400, 404, 405} | set(r.errors)
    if r.action != "public":
        codes |= {401, 403}
    if r.rate_limited:
        codes.add(429)
    if r.body is not None:
        codes |= {413, 422}
    if r.query is not None:
        codes.add(422)
    responses = {str(code): success for code in (r.status, *r.extra_success)}
    for code in sorted(codes):
        responses[str(code)] = {"description": _ERROR_TEXT.get(code, "error"),
                                "content": {m: {"schema": r.error_schema if m == "application/json" else {}}
                                            for m in r.media_types}}
    op["responses"] = responses
    return op


def openapi_document(service_classes: Iterable, title: str = "Minqing API", version: str = "1") -> dict:
    """The OpenAPI 3.0 document of the public HTTP API (through the gateway), generated by apispec
    from the routes' declarations and their marshmallow schemas."""
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin
    from minqing.http import ErrorOut
    spec = APISpec(title=title, version=version, openapi_version="3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=ErrorOut)
    paths: dict[str, dict] = {}
    for owner, routes in [("gateway", GATEWAY_ROUTES)] + [(cls.name, routes_of(cls)) for cls in service_classes]:
        for r in routes:
            if owner != "gateway" and r.path in ("/health", "/metrics"):
                continue    # each service's own operational endpoints, not routed by the gateway
            paths.setdefault(r.openapi_path, {})[r.method.lower()] = _operation(owner, r)
    for path in sorted(paths):
        spec.path(path=path, operations=paths[path])
    return spec.to_dict()
