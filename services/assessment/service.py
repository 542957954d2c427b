"""Assessment: cadre performance derived from the recorded history."""
from __future__ import annotations

from nameko.messaging import consume
from nameko.web.handlers import http

from minqing.db import read_transaction
from minqing.http import ApiError, api, json_response
from minqing.service_kit import DeadLetters, Following, LedgerProvider, health, service_queue, metrics_response
from services.assessment.projection import CadreCounts, scorecards
from services.assessment.tables import metadata_obj


class AssessmentService:
    name = "assessment"
    ledger = LedgerProvider(metadata_obj)
    dead_letters = DeadLetters()
    counts = Following(CadreCounts)

    @consume(service_queue("assessment", CadreCounts.event_types))
    def on_event(self, body):
        self.counts.on_message(body, self.dead_letters)

    @http("GET", "/metrics")
    def metrics(self, request):
        return metrics_response()

    @http("GET", "/health")
    def health(self, request):
        status, body = health(self.name, self.ledger, self.dead_letters.amqp_uri, self.counts.follower)
        return json_response(status, body)

    @http("GET", "/api/v1/assessment/<string:county>/cadres")
    @api
    def list_cadres(self, request, county):
        with read_transaction(self.ledger.engine) as conn:
            cards = scorecards(conn, county)
        return json_response(200, {"county": county, "as_of_position": self.counts.follower.position,
                                   "cadres": cards})

    @http("GET", "/api/v1/assessment/<string:county>/cadres/<string:cadre>")
    @api
    def get_cadre(self, request, county, cadre):
        with read_transaction(self.ledger.engine) as conn:
            cards = scorecards(conn, county, cadre)
        if not cards:
            raise ApiError(404, "not_found", "no recorded work for this cadre", {"cadre": ["unknown"]})
        return json_response(200, {"county": county, "as_of_position": self.counts.follower.position, **cards[0]})
