"""Per-route HTTP metrics (issue #15 item 6): latency histograms and status counters labelled by the
route's template — never the raw path, which carries case ids, tracking numbers and PINs."""
from __future__ import annotations

import functools

from prometheus_client import REGISTRY
from werkzeug.routing import Map, Rule
from werkzeug.test import Client
from werkzeug.wrappers import Response

from minqing.httpmetrics import RouteMetrics, matcher, template

URLS = Map([Rule("/api/v1/cases/<string:case_id>", endpoint="case"), Rule("/api/v1/cases", endpoint="report",
                                                                          methods=["POST"]),
            Rule("/console/cases/<case_id>/<any(accept, note):action>", endpoint="act", methods=["POST"])])


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.endswith("boom"):
        raise RuntimeError("a bug")
    status = 201 if environ["REQUEST_METHOD"] == "POST" else (500 if "broken" in path else 200)
    return Response("{}", status=status, mimetype="application/json")(environ, start_response)


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_requests_are_counted_and_timed_under_their_route_template_never_the_raw_path():
    client = Client(RouteMetrics(app, "unit-a", matcher(URLS)))
    client.open = functools.partial(client.open, buffered=True)      # as a server does: the body read, then closed
    case = "/api/v1/cases/{case_id}"
    before = sample("minqing_http_requests_total", process="unit-a", method="GET", route=case, status="200")
    for case_id in ("0b7f6c1e-aaaa", "LJ-20261123-0001", "c3"):
        assert client.get(f"/api/v1/cases/{case_id}?pin=482913").status_code == 200
    assert client.get("/api/v1/cases/broken").status_code == 500
    assert client.post("/api/v1/cases").status_code == 201
    assert client.get("/nothing/here/42").status_code == 200            # the app answers; no route matched
    assert client.post("/console/cases/c9/accept").status_code == 201
    assert sample("minqing_http_requests_total", process="unit-a", method="GET", route=case, status="200") == before + 3
    assert sample("minqing_http_requests_total", process="unit-a", method="GET", route=case, status="500") == 1
    assert sample("minqing_http_requests_total", process="unit-a", method="POST", route="/api/v1/cases", status="201") == 1
    assert sample("minqing_http_requests_total", process="unit-a", method="GET", route="unmatched", status="200") == 1
    assert sample("minqing_http_requests_total", process="unit-a", method="POST",
                  route="/console/cases/{case_id}/{action}", status="201") == 1
    assert sample("minqing_http_request_duration_seconds_count", process="unit-a", method="GET", route=case) == 4
    exposed = "\n".join(f"{s.name}{s.labels}" for m in REGISTRY.collect() for s in m.samples
                        if s.name.startswith("minqing_http_"))
    for raw in ("0b7f6c1e", "LJ-2026", "482913", "/nothing", "c9"):
        assert raw not in exposed


def test_a_request_whose_handler_raises_is_counted_as_500_and_a_strange_method_is_other():
    client = Client(RouteMetrics(app, "unit-b", matcher(URLS)))
    client.open = functools.partial(client.open, buffered=True)      # as a server does: the body read, then closed
    try:
        client.get("/api/v1/cases/boom")
    except RuntimeError:
        pass
    client.open("/api/v1/cases/x", method="PROPFIND")
    assert sample("minqing_http_requests_total", process="unit-b", method="GET", route="/api/v1/cases/{case_id}",
                  status="500") == 1
    assert sample("minqing_http_requests_total", process="unit-b", method="OTHER",
                  route="/api/v1/cases/{case_id}", status="200") == 1


def test_the_gateway_serves_its_own_metrics():
    client = Client(RouteMetrics(app, "unit-c", matcher(URLS), serve_metrics=True))
    client.open = functools.partial(client.open, buffered=True)      # as a server does: the body read, then closed
    client.get("/api/v1/cases/1")
    body = client.get("/metrics").get_data(as_text=True)
    assert 'minqing_http_requests_total{method="GET",process="unit-c",route="/api/v1/cases/{case_id}",status="200"} 1.0' in body


def test_templates_read_as_in_the_openapi_document():
    assert template("/api/v1/cases/<string:case_id>/notes") == "/api/v1/cases/{case_id}/notes"
    assert template("/console/cases/<case_id>/<any(accept, note):action>") == "/console/cases/{case_id}/{action}"
