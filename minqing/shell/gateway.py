"""The public HTTP entry on MINQING_LISTEN_ADDRESS:MINQING_HTTP_PORT (`minqing gateway`): forwards each path to the service that owns
it, and answers GET /health for the whole stack (every service, the ledger, the broker, the relay).

Each service also serves its own /health on its own port; nameko gives every service container its
own web server, so one port for all of them needs this small front. It runs as a process of its own
(`minqing gateway`), supervised by `minqing run` like the services, and reaches each service at
MINQING_<NAME>_HOST:MINQING_<NAME>_PORT (Settings.service_address), so the services may live on
other hosts or pods.

The gateway tells the services who the client is with `X-Forwarded-For`, and proves that the header is
its own with `X-Minqing-Gateway: <MINQING_GATEWAY_SECRET>`; a service trusts the forwarded address only
with that proof (minqing.access.client_key), so a client talking to a service port directly cannot
pick its own address to dodge rate limits.
"""
from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import time
from typing import Callable
from urllib.parse import quote

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from minqing import relay as relay_mod
from minqing import config as config_mod
from minqing.access import GATEWAY_HEADER
from minqing.config import Settings
from minqing.endpoints import openapi_document, routes_of
from minqing.shell.registry import SERVICES, service_class
from minqing.ledger import Ledger

log = logging.getLogger("minqing.gateway")
MAX_BODY = 1024 * 1024

def _build_routes() -> list[tuple[str, re.Pattern, str]]:
    """(method, path pattern, service) from the services' declared routes — one source of truth."""
    out = []
    for name in SERVICES:
        for r in routes_of(service_class(name)):
            if r.path in ("/health", "/metrics"):
                continue
            pattern = "^" + re.sub(r"<(?:[a-z]+:)?[a-z_]+>", "[^/]+", r.path) + "$"
            out.append((r.method, re.compile(pattern), name))
    return out


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
              "proxy-authenticate", "host", "content-length"}
# Never passed on from a client (only the gateway speaks for the client) ...
FROM_CLIENT_DROPPED = {"x-forwarded-for", GATEWAY_HEADER.lower()}
# ... nor from a service: the gateway's own server writes Date and Server once.
FROM_SERVICE_DROPPED = {"date", "server"}


def _json(status: int, body: dict) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


def _error(path: str, status: int, code: str, message: str) -> Response:
    """An error the gateway makes itself, in the format the client asked for: Open311's XML error
    list when the path ends `.xml`, Minqing's JSON error otherwise."""
    if path.endswith(".xml"):
        from services.intake import open311
        body, content_type = open311.render("errors", [{"code": status, "description": message}], "xml")
        return Response(body, status=status, content_type=content_type)
    return _json(status, {"error": {"code": code, "message": message}})


def route(method: str, path: str, routes) -> str | None:
    for m, pattern, service in routes:
        if (m == method or (m == "GET" and method == "HEAD")) and pattern.match(path):
            return service
    return None


class Gateway:
    def __init__(self, settings: Settings, ledger: Ledger):
        self.settings = settings
        self.ledger = ledger
        self.routes = _build_routes() + [(m, re.compile(r"^/(console|static)/"), "console") for m in ("GET", "POST")]
        self.openapi = openapi_document(service_class(n) for n in SERVICES)
        self._health_cache: tuple | None = None

    def _forward(self, service: str, request: Request) -> Response:
        host, port = self.settings.service_address(service)
        too_large = _error(request.path, 413, "body_too_large", f"the request body exceeds {MAX_BODY} bytes")
        if request.content_length and request.content_length > MAX_BODY:
            return too_large
        body = request.stream.read(MAX_BODY + 1)      # bounded even when chunked (no Content-Length)
        if len(body) > MAX_BODY:
            return too_large
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() not in FROM_CLIENT_DROPPED}
        headers["X-Forwarded-For"] = request.remote_addr or "unknown"
        if self.settings.gateway_secret:
            headers[GATEWAY_HEADER] = self.settings.gateway_secret
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            # the URI as the client sent it (still percent-encoded), so any path is forwarded as is
            target = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or quote(request.path)
            if not target.startswith("/") or any(c in target for c in " \r\n"):
                return _error(request.path, 400, "bad_request", "the request line is malformed")
            conn.request(request.method, target, body=body or None, headers=headers)
            upstream = conn.getresponse()
            payload = upstream.read()
            out_headers = [(k, v) for k, v in upstream.getheaders()
                           if k.lower() not in HOP_BY_HOP and k.lower() not in FROM_SERVICE_DROPPED]
            return Response(payload, status=upstream.status, headers=out_headers)
        except Exception as exc:       # unreachable, reset, or anything odd: one clean answer, no trace
            log.warning("%s is unreachable: %s", service, type(exc).__name__)
            return _error(request.path, 503, "service_unavailable",
                          f"the {service} service is not answering; try again shortly")
        finally:
            conn.close()

    def _service_health(self, service: str) -> dict:
        conn = http.client.HTTPConnection(*self.settings.service_address(service), timeout=5)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            return json.loads(resp.read())
        except (OSError, ValueError) as exc:
            return {"service": service, "status": "down", "error": type(exc).__name__}
        finally:
            conn.close()

    def health(self) -> Response:
        """Cached for a second: /health is public, and each answer asks four services and the ledger."""
        now = time.monotonic()
        if self._health_cache and now - self._health_cache[0] < 1.0:
            status, body = self._health_cache[1]
            return _json(status, body)
        response = self._health()
        self._health_cache = (now, (response.status_code, json.loads(response.get_data())))
        return response

    def _health(self) -> Response:
        services = {name: self._service_health(name) for name in self.settings.service_ports}
        try:
            relay = {"status": "ok", **relay_mod.lag(self.ledger)}
        except Exception as exc:
            relay = {"status": "down", "error": type(exc).__name__}
        ok = relay["status"] == "ok" and all(s.get("status") == "ok" for s in services.values())
        return _json(200 if ok else 503, {"status": "ok" if ok else "degraded", "services": services, "relay": relay})

    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.path == "/health" and request.method in ("GET", "HEAD"):
            response = self.health()
        elif request.path == "/api/v1/openapi.json" and request.method in ("GET", "HEAD"):
            response = _json(200, self.openapi)
        else:
            service = route(request.method, request.path, self.routes)
            allowed = sorted({m for m, pattern, _ in self.routes if pattern.match(request.path)})
            if service is None and allowed:
                response = _error(request.path, 405, "method_not_allowed",
                                  f"{request.path} answers {', '.join(allowed)}")
                response.headers["Allow"] = ", ".join(allowed)
            elif service is None:
                response = _error(request.path, 404, "not_found", f"no endpoint {request.method} {request.path}")
            else:
                response = self._forward(service, request)
        return response(environ, start_response)


def serve(settings: Settings, ledger: Ledger, stop: threading.Event) -> None:
    """Serve until `stop` is set. The port is bound with SO_REUSEADDR, so it can share the port with the
    placeholder socket `minqing run` holds to keep the port out of the kernel's ephemeral range
    (minqing.ports)."""
    from minqing.httpmetrics import RouteMetrics
    app = RouteMetrics(Gateway(settings, ledger), "gateway", gateway_route_of(), serve_metrics=True)
    server = make_server(settings.listen_address, settings.http_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    log.info("gateway listening on %s port %d", settings.listen_address, settings.http_port)
    stop.wait()
    server.shutdown()


def main() -> int:
    """`minqing gateway` (or `python -m minqing.shell.gateway`): the gateway as its own process, stopped by
    SIGTERM or SIGINT."""
    import signal

    from minqing.commands import engine_and_ledger as _engine_and_ledger
    from minqing.logs import setup_logging
    settings = config_mod.load()
    setup_logging(settings.log_level, "gateway")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    _, ledger = _engine_and_ledger(settings)
    serve(settings, ledger, stop)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())


def gateway_route_of() -> Callable[[dict], str]:
    """The gateway's routes: every service's declared routes (what it forwards), the console's pages,
    and its own /health and OpenAPI document."""
    from minqing.endpoints import routes_of
    from minqing.httpmetrics import map_of, matcher
    from minqing.shell.registry import SERVICES, service_class
    from services.console.app import URLS as CONSOLE
    rules = [([r.method], r.path) for name in SERVICES for r in routes_of(service_class(name))
             if r.path not in ("/health", "/metrics")]
    rules += [(["GET"], "/health"), (["GET"], "/api/v1/openapi.json")]
    rules += [(rule.methods, rule.rule) for rule in CONSOLE.iter_rules() if rule.rule != "/health"]
    return matcher(map_of(rules))
