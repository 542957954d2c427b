"""Intake: where residents' matters enter (POST /api/v1/cases) and where a case can be read back."""
from __future__ import annotations

from nameko.messaging import consume
from nameko.web.handlers import http

from minqing.casefile import fold, stream_of
from minqing.clock import SYSTEM_CLOCK
from minqing.db import read_transaction, write_transaction
from minqing.http import ApiError, api, json_response, read_json
from minqing.service_kit import (DeadLetters, Following, LedgerProvider, VaultProvider, health,
                                 service_queue, metrics_response)
from services.intake.projection import CountyCatalogue, load_county
from services.intake.registration import register
from services.intake.schemas import ReportIn
from services.intake.tables import metadata_obj


def present_case(case, policy) -> dict:
    loc = case.location or {}
    return {
        "case_id": case.case_id,
        "tracking_no": case.tracking_no,
        "county": case.county,
        "status": case.status,
        "channel": case.channel,
        "category": case.category,
        "kind": case.kind,
        "urgency": case.urgency,
        "summary": case.summary,
        "location": {tier: {"code": loc.get(tier), "name": policy.place_name(loc.get(tier)) if policy else None}
                     for tier in ("township", "village", "hamlet") if loc.get(tier)},
        "reported_at": case.reported_at,
        "registered_at": case.registered_at,
        "assignment": None if not case.unit else {
            "tier": case.tier, "unit": case.unit,
            "unit_name": (policy.unit(case.unit) or {}).get("name") if policy else None,
            "cadre": case.cadre, "response_due": case.response_due, "resolution_due": case.resolution_due,
            "policy_version": case.policy_version},
        "version": case.version,
        "history": list(case.history),
    }


class IntakeService:
    name = "intake"
    ledger = LedgerProvider(metadata_obj)
    vault = VaultProvider()
    dead_letters = DeadLetters()
    catalogue = Following(CountyCatalogue)

    @consume(service_queue("intake", CountyCatalogue.event_types))
    def on_event(self, body):
        self.catalogue.on_message(body, self.dead_letters)

    @http("GET", "/metrics")
    def metrics(self, request):
        return metrics_response()

    @http("GET", "/health")
    def health(self, request):
        status, body = health(self.name, self.ledger, self.dead_letters.amqp_uri, self.catalogue.follower)
        return json_response(status, body)

    @http("POST", "/api/v1/cases")
    @api
    def report(self, request):
        report = read_json(request, ReportIn())
        actor = request.headers.get("X-Minqing-Actor", "operator:anonymous")
        with write_transaction(self.ledger.engine) as conn:
            policy = load_county(conn, report["county"])
            if policy is None:
                raise ApiError(422, "unknown_county", "no such county is configured",
                               {"county": [f"{report['county']!r} is not a configured county"]})
            registered = register(conn, self.ledger, self.vault, policy, report, SYSTEM_CLOCK, actor)
        return json_response(201, {
            "case_id": registered.case_id, "tracking_no": registered.tracking_no, "pin": registered.pin,
            "status": "reported", "position": registered.position,
            "links": {"case": f"/api/v1/cases/{registered.case_id}"},
        }, headers={"Location": f"/api/v1/cases/{registered.case_id}"})

    @http("GET", "/api/v1/cases/<string:case_id>")
    @api
    def get_case(self, request, case_id):
        events = self.ledger.read_stream(stream_of(case_id))
        if not events:
            raise ApiError(404, "not_found", "no case with this id", {"case_id": ["unknown"]})
        case = fold(case_id, events)
        with read_transaction(self.ledger.engine) as conn:
            policy = load_county(conn, case.county)
        return json_response(200, present_case(case, policy))

    @http("GET", "/api/v1/counties/<string:county>")
    @api
    def get_county(self, request, county):
        with read_transaction(self.ledger.engine) as conn:
            policy = load_county(conn, county)
        if policy is None:
            raise ApiError(404, "not_found", "no such county is configured", {"county": ["unknown"]})
        return json_response(200, policy.catalogue())
