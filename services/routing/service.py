"""Routing: assigns reported cases (派单) and takes cadres' actions on them."""
from __future__ import annotations

from minqing.endpoints import route
from minqing.http import json_response, read_json
from minqing.service_kit import consume_events, DeadLetters, Following, LedgerProvider, health, service_queue, metrics_response
from services.routing.actions import ResolveIn, resolve
from services.routing.projection import RoutingProjection
from services.routing.tables import metadata_obj


class RoutingService:
    name = "routing"
    ledger = LedgerProvider(metadata_obj)
    dead_letters = DeadLetters()
    assignments = Following(RoutingProjection)

    @consume_events(service_queue("routing", RoutingProjection.event_types))
    def on_event(self, body):
        self.assignments.on_message(body, self.dead_letters)

    @route("GET", "/metrics", action="public", summary="Prometheus metrics of this service")
    def metrics(self, request, principal):
        return metrics_response()

    @route("GET", "/health", action="public", summary="Health of the routing service")
    def health(self, request, principal):
        status, body = health(self.name, self.ledger, self.dead_letters.amqp_uri, self.assignments.follower)
        return json_response(status, body)

    @route("POST", "/api/v1/cases/<string:case_id>/resolve", action="case.resolve",
           summary="The holding cadre resolves the case (办结)")
    def resolve(self, request, principal, case_id):
        command = read_json(request, ResolveIn())
        event = resolve(self.ledger, case_id, command, principal)
        return json_response(200, {"case_id": case_id, "status": "resolved", "version": event.version,
                                   "position": event.position})
