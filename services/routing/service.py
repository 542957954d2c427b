"""Routing: assigns reported cases (派单) and takes cadres' actions on them."""
from __future__ import annotations

from nameko.messaging import consume
from nameko.web.handlers import http

from minqing.http import api, json_response, read_json
from minqing.service_kit import DeadLetters, Following, LedgerProvider, health, service_queue, metrics_response
from services.routing.actions import ResolveIn, resolve
from services.routing.projection import RoutingProjection
from services.routing.tables import metadata_obj


class RoutingService:
    name = "routing"
    ledger = LedgerProvider(metadata_obj)
    dead_letters = DeadLetters()
    assignments = Following(RoutingProjection)

    @consume(service_queue("routing", RoutingProjection.event_types))
    def on_event(self, body):
        self.assignments.on_message(body, self.dead_letters)

    @http("GET", "/metrics")
    def metrics(self, request):
        return metrics_response()

    @http("GET", "/health")
    def health(self, request):
        status, body = health(self.name, self.ledger, self.dead_letters.amqp_uri, self.assignments.follower)
        return json_response(status, body)

    @http("POST", "/api/v1/cases/<string:case_id>/resolve")
    @api
    def resolve(self, request, case_id):
        command = read_json(request, ResolveIn())
        actor = request.headers.get("X-Minqing-Actor", f"cadre:{command['cadre']}")
        event = resolve(self.ledger, case_id, command, actor)
        return json_response(200, {"case_id": case_id, "status": "resolved", "version": event.version,
                                   "position": event.position})
