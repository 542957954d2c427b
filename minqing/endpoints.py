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
from typing import Callable, Iterable

from nameko.web.handlers import http

from minqing import access
from minqing.db import read_transaction
from minqing.http import ApiError, api


@dataclass(frozen=True)
class Route:
    method: str
    path: str          # werkzeug rule, e.g. /api/v1/cases/<string:case_id>
    action: str        # a key of minqing.access.POLICY
    summary: str
    rate_limited: bool

    @property
    def openapi_path(self) -> str:
        return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", self.path)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"<(?:[a-z]+:)?([a-z_]+)>", self.path)


def route(method: str, path: str, *, action: str, summary: str,
          limiter: access.RateLimiter | None = None) -> Callable:
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
                key = principal.token_id if principal else access.client_key(request)
                if not limiter.allow(key):
                    raise access.too_many()
            return fn(self, request, principal, **path_values)

        wrapped = api(handler)
        wrapped.minqing_route = Route(method, path, action, summary, limiter is not None)
        return http(method, path)(wrapped)
    return decorate


SERVICES = {
    "intake": "services.intake.service:IntakeService",
    "routing": "services.routing.service:RoutingService",
    "notify": "services.notify.service:NotifyService",
    "assessment": "services.assessment.service:AssessmentService",
}


def service_class(name: str):
    import importlib
    module, _, attr = SERVICES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def routes_of(service_cls) -> list[Route]:
    return [getattr(service_cls, name).minqing_route for name in dir(service_cls)
            if hasattr(getattr(service_cls, name, None), "minqing_route")]


GATEWAY_ROUTES = [
    Route("GET", "/health", "public", "Health of the whole stack: services, ledger, broker, relay", False),
    Route("GET", "/api/v1/openapi.json", "public", "This document", False),
]


def openapi_document(service_classes: Iterable, title: str = "Minqing API", version: str = "1") -> dict:
    """An OpenAPI 3.0 document of the public HTTP API (through the gateway)."""
    paths: dict[str, dict] = {}
    for owner, routes in [("gateway", GATEWAY_ROUTES)] + [(cls.name, routes_of(cls)) for cls in service_classes]:
        for r in routes:
            if owner != "gateway" and r.path in ("/health", "/metrics"):
                continue    # each service's own operational endpoints, not routed by the gateway
            op = {
                "operationId": f"{owner}.{r.method.lower()}.{r.openapi_path}",
                "summary": r.summary,
                "x-minqing-service": owner,
                "x-minqing-action": r.action,
                "x-minqing-roles": sorted(access.POLICY[r.action]),
                "security": [] if r.action == "public" else [{"bearer": []}],
                "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                               for p in r.path_params],
                "responses": {"default": {"description": "JSON; errors as {\"error\": {code, message, fields}}"}},
            }
            if r.action != "public":
                op["responses"].update({"401": {"description": "no valid token"},
                                        "403": {"description": "role or county not allowed"}})
            if r.rate_limited:
                op["responses"]["429"] = {"description": "rate limited"}
            paths.setdefault(r.openapi_path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": dict(sorted(paths.items())),
    }
