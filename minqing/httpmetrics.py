"""Per-route HTTP metrics for every HTTP process: the gateway, each service, the console.

    minqing_http_request_duration_seconds{process, method, route}   histogram, from the request's
                                                                      arrival to the last byte handed on
    minqing_http_requests_total{process, method, route, status}     counter

`route` is the route's *template* as declared (`/api/v1/cases/{case_id}`), never the raw path: ids,
tracking numbers and PINs never become label values (unbounded series, and personal data in the
metrics). A path no route matches is `unmatched`; a method outside the few HTTP defines is `OTHER`.

One WSGI middleware (`RouteMetrics`) does it for every server: nameko's web server in each service
(minqing.endpoints), the console's werkzeug app and the gateway, which also answers GET /metrics
itself (nginx never passes /metrics on: deploy/nginx). Each process has its own registry, scraped on
its own port; the `process` label tells them apart on a dashboard that sums jobs.
"""
from __future__ import annotations

import re
import time
from typing import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

# Up to the 30 s the gateway waits for a service; an intake report is ~0.1 s (bench/results.json).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
UNMATCHED = "unmatched"

DURATION = Histogram("minqing_http_request_duration_seconds", "HTTP request latency by route template",
                     ["process", "method", "route"], buckets=BUCKETS)
REQUESTS = Counter("minqing_http_requests_total", "HTTP requests answered, by route template and status code",
                   ["process", "method", "route", "status"])


def template(rule: str) -> str:
    """werkzeug's `/api/v1/cases/<string:case_id>` as `/api/v1/cases/{case_id}`."""
    return re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", r"{\1}", rule)


def matcher(url_map: Map) -> Callable[[dict], str]:
    """route_of(environ) for a werkzeug Map: the matched rule's template, or `unmatched`."""
    def route_of(environ: dict) -> str:
        try:
            rule, _ = url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:            # 404, 405, a redirect to the slash form: no route answered
            return UNMATCHED
        return template(rule.rule)
    return route_of


def map_of(rules: Iterable[tuple[Iterable[str] | None, str]]) -> Map:
    """A Map from (methods or None for any, werkzeug path) pairs, for a process that routes without
    one (the gateway)."""
    return Map([Rule(path, methods=methods, endpoint=path) for methods, path in rules])


class RouteMetrics:
    """WSGI middleware: times each request and counts its status under its route template."""

    def __init__(self, app, process: str, route_of: Callable[[dict], str], *, serve_metrics: bool = False):
        self.app, self.process, self.route_of, self.serve_metrics = app, process, route_of, serve_metrics

    def __call__(self, environ, start_response):
        if self.serve_metrics and environ.get("PATH_INFO") == "/metrics" and environ.get("REQUEST_METHOD") == "GET":
            body = generate_latest()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
            return [body]
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "GET").upper()
        method = method if method in METHODS else "OTHER"
        try:
            route = self.route_of(environ)
        except Exception:                # a metric must never break a request
            route = UNMATCHED
        status = ["500"]                 # if the app raises before answering, the server answers 500

        def recording_start_response(status_line, headers, exc_info=None):
            status[0] = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, exc_info) if exc_info else start_response(status_line, headers)

        def observe():
            DURATION.labels(self.process, method, route).observe(time.perf_counter() - started)
            REQUESTS.labels(self.process, method, route, status[0]).inc()

        try:
            result = self.app(environ, recording_start_response)
        except BaseException:
            observe()
            raise
        return _Observed(result, observe)


class _Observed:
    """The app's response iterable, observed once when the server closes it (after the last byte)."""

    def __init__(self, result, observe):
        self.result, self.observe, self.done = result, observe, False

    def __iter__(self):
        return iter(self.result)

    def close(self):
        try:
            if hasattr(self.result, "close"):
                self.result.close()
        finally:
            if not self.done:
                self.done = True
                self.observe()
