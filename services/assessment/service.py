"""Assessment: cadre performance derived from the recorded history."""
from __future__ import annotations

from minqing import access
from minqing.db import read_transaction
from minqing.endpoints import route
from minqing.http import ApiError, json_response
from minqing.service_kit import consume_events, DeadLetters, Following, LedgerProvider, health, service_queue, metrics_response
from services.assessment.projection import CadreCounts, scorecards
from services.assessment.tables import metadata_obj


class AssessmentService:
    name = "assessment"
    ledger = LedgerProvider(metadata_obj)
    dead_letters = DeadLetters()
    counts = Following(CadreCounts)

    @consume_events(service_queue("assessment", CadreCounts.event_types))
    def on_event(self, body):
        self.counts.on_message(body, self.dead_letters)

    @route("GET", "/metrics", action="public", summary="Prometheus metrics of this service")
    def metrics(self, request, principal):
        return metrics_response()

    @route("GET", "/health", action="public", summary="Health of the assessment service")
    def health(self, request, principal):
        status, body = health(self.name, self.ledger, self.dead_letters.amqp_uri, self.counts.follower)
        return json_response(status, body)

    @route("GET", "/api/v1/assessment/<string:county>/cadres", action="assessment.read",
           summary="Per-cadre scorecards of a county (a cadre sees only their own)")
    def list_cadres(self, request, principal, county):
        access.authorize(principal, "assessment.read", county)
        with read_transaction(self.ledger.engine) as conn:
            cards = scorecards(conn, county, principal.cadre if principal.role == "cadre" else None)
        return json_response(200, {"county": county, "as_of_position": self.counts.follower.position,
                                   "cadres": cards})

    @route("GET", "/api/v1/assessment/<string:county>/cadres/<string:cadre>", action="assessment.read",
           summary="One cadre's scorecard")
    def get_cadre(self, request, principal, county, cadre):
        access.authorize(principal, "assessment.read", county)
        if principal.role == "cadre" and cadre != principal.cadre:
            raise ApiError(404, "not_found", "no recorded work for this cadre", {"cadre": ["unknown"]})
        with read_transaction(self.ledger.engine) as conn:
            cards = scorecards(conn, county, cadre)
        if not cards:
            raise ApiError(404, "not_found", "no recorded work for this cadre", {"cadre": ["unknown"]})
        return json_response(200, {"county": county, "as_of_position": self.counts.follower.position, **cards[0]})
