"""Assessment: cadre, unit, township and county performance derived from the recorded history."""
from __future__ import annotations

import uuid


from minqing import access
from minqing.clock import SYSTEM_CLOCK
from minqing.db import read_transaction
from minqing.endpoints import route
from minqing.http import ApiError, json_response, read_json, read_query
from minqing.ledger import DuplicateEventIdError, Metadata, NewEvent
from minqing.service_base import Service
from services.assessment import periods
from services.assessment import scorecards as sc
from services.assessment.projection import AssessmentFacts
from services.assessment.schemas import ExplainQuery, PeriodQuery, VisitIn, VisitOut
from services.assessment.tables import metadata_obj

_NS = uuid.UUID("3f1d2c4b-8e7a-4b6c-9d5e-1a2b3c4d5e6f")


class AssessmentService(Service, name="assessment", follows=AssessmentFacts, tables=metadata_obj):

    def _period(self, conn, county: str, given: str | None) -> str:
        if given:
            return given
        tz = (sc.county_info(conn, county) or {}).get("timezone", periods.DEFAULT_TZ)
        return periods.current_period(SYSTEM_CLOCK.now(), tz)

    def _cards(self, request, principal, county: str, kind: str, subject: str | None = None) -> dict:
        access.authorize(principal, "assessment.read", county)
        given = read_query(request, PeriodQuery())["period"]
        with read_transaction(self.ledger.engine) as conn:
            result = sc.scorecards(conn, county, self._period(conn, county, given), kind, subject)
        return {**result, "as_of_position": self.following.follower.position}

    @route("GET", "/api/v1/assessment/<string:county>/cadres", action="assessment.read", query=PeriodQuery,
           summary="Cadres' scorecards for a period: counts, rates, composite score, visits, flags (a cadre sees only their own)")
    def list_cadres(self, request, principal, county):
        own = principal.cadre if principal.role == "cadre" else None
        result = self._cards(request, principal, county, "cadre", own)
        return json_response(200, result)

    @route("GET", "/api/v1/assessment/<string:county>/cadres/<string:cadre>", action="assessment.read",
           query=PeriodQuery, errors=(404,),
           summary="One cadre's scorecard for a period; a cadre of the published roster without recorded work "
                   "appears with zero figures, flagged no_recorded_work; an unknown id is 404")
    def get_cadre(self, request, principal, county, cadre):
        if principal.role == "cadre" and cadre != principal.cadre:
            raise ApiError(404, "not_found", "no recorded work for this cadre", {"cadre": ["unknown"]})
        result = self._cards(request, principal, county, "cadre", cadre)
        if not result["cards"]:
            raise ApiError(404, "not_found", "no such cadre in the county's published roster, and no recorded work",
                           {"cadre": ["unknown"]})
        return json_response(200, result)

    @route("GET", "/api/v1/assessment/<string:county>/units", action="assessment.read", query=PeriodQuery,
           summary="Units' scorecards for a period")
    def list_units(self, request, principal, county):
        return json_response(200, self._cards(request, principal, county, "unit"))

    @route("GET", "/api/v1/assessment/<string:county>/townships", action="assessment.read", query=PeriodQuery,
           summary="Townships' figures for a period (the cases located in each township)")
    def list_townships(self, request, principal, county):
        return json_response(200, self._cards(request, principal, county, "township"))

    @route("GET", "/api/v1/assessment/<string:county>/summary", action="assessment.read", query=PeriodQuery,
           summary="The county's figures for a period")
    def summary(self, request, principal, county):
        return json_response(200, self._cards(request, principal, county, "county"))

    @route("GET", "/api/v1/assessment/<string:county>/rankings", action="assessment.read", query=PeriodQuery,
           summary="Cadres ranked by composite score per level (village, township, county), with the top ten")
    def rankings(self, request, principal, county):
        access.authorize(principal, "assessment.read", county)
        given = read_query(request, PeriodQuery())["period"]
        with read_transaction(self.ledger.engine) as conn:
            result = sc.rankings(conn, county, self._period(conn, county, given))
        return json_response(200, {**result, "as_of_position": self.following.follower.position})

    @route("GET", "/api/v1/assessment/<string:county>/explain", action="assessment.read", query=ExplainQuery,
           errors=(404,), summary="The cases and ledger positions behind one figure (?figure=satisfaction_rate"
                                  "&kind=cadre&subject=ID&period=P); a cadre may ask only about themself")
    def explain(self, request, principal, county):
        access.authorize(principal, "assessment.read", county)
        q = read_query(request, ExplainQuery())
        subject = q["subject"] or principal.cadre
        if subject is None:
            raise ApiError(422, "invalid_fields", "name the subject", {"subject": ["required for this role"]})
        if principal.role == "cadre" and (q["kind"] != "cadre" or subject != principal.cadre):
            raise ApiError(404, "not_found", "no such figure for this principal", {"subject": ["unknown"]})
        with read_transaction(self.ledger.engine) as conn:
            result = sc.explain(conn, county, self._period(conn, county, q["period"]), q["kind"], subject, q["figure"])
        return json_response(200, {**result, "as_of_position": self.following.follower.position})

    @route("POST", "/api/v1/visits", action="visit.log", body=VisitIn, response=VisitOut, status=201,
           summary="A field visit (民情下访) by the token's cadre: the day, the hamlet, households reached; "
                   "the same cadre, day and hamlet again is the same visit")
    def log_visit(self, request, principal):
        given = read_json(request, VisitIn())
        with read_transaction(self.ledger.engine) as conn:
            info = sc.county_info(conn, principal.county) or {}
        errors = {}
        late = periods.visit_day_error(given["day"], SYSTEM_CLOCK.now(), info.get("timezone", periods.DEFAULT_TZ))
        if late:
            errors["day"] = [late]
        if given["hamlet"] not in info.get("places", ()):
            errors["hamlet"] = [f"{given['hamlet']!r} is not a village or hamlet code of {principal.county}"]
        if errors:
            raise ApiError(422, "invalid_fields", "the visit cannot be recorded", errors)
        day = given["day"].isoformat()
        event = NewEvent("visit.logged", {"cadre": principal.cadre, "county": principal.county, "day": day,
                                          "hamlet": given["hamlet"], "households": given["households"]},
                         Metadata(actor=principal.actor, county=principal.county),
                         event_id=str(uuid.uuid5(_NS, f"{principal.county}:{principal.cadre}:{day}:{given['hamlet']}")))
        try:
            recorded = self.ledger.append(f"cadre-{principal.cadre}", [event])[0]
        except DuplicateEventIdError:
            raise ApiError(409, "conflict", "this visit is recorded already with other figures",
                           {"households": ["differs from the visit recorded for this cadre, day and place"]})
        return json_response(201, {"event_id": recorded.event_id, "position": recorded.position,
                                   "cadre": principal.cadre, "day": day})
