"""Routing: assigns reported cases (派单), takes cadres' and supervisors' actions on them, runs the
timers (warn, overdue, escalate, chase → supervise → listed) and serves worklists."""
from __future__ import annotations

import logging

from marshmallow import Schema, ValidationError, fields, validate

from minqing.clock import SYSTEM_CLOCK
from minqing.db import read_transaction
from minqing.endpoints import route
from minqing.rpc import guarded_rpc
from minqing.http import ApiError, flatten_errors, json_response, read_json, read_query
from minqing.service_base import Service
from services.routing import actions
from services.routing.explain import explain
from services.routing.projection import RoutingProjection, policy_in_force
from services.routing.sweeping import Sweeping
from services.routing.tables import metadata_obj
from services.routing.worklist import WorklistQuery, calendar_health, worklist

log = logging.getLogger("minqing.routing")


def _answer(case, recorded) -> dict:
    last = recorded[-1]
    return {"case_id": case.case_id, "status": case.status, "unit": case.unit, "cadre": case.cadre,
            "events": [e.type for e in recorded], "version": last.version, "position": last.position}


ACTIONS = {      # action name → (command schema, decision): the HTTP routes and the RPC share them
    "accept": (actions.AcceptIn(), actions.accept),
    "note": (actions.NoteIn(), actions.note),
    "resolve": (actions.ResolveIn(), actions.resolve),
    "escalate": (actions.ReasonIn(), lambda p, c: actions.escalate(p, c, SYSTEM_CLOCK)),
    "transfer": (actions.TransferIn(), lambda p, c: actions.transfer(p, c, SYSTEM_CLOCK)),
    "joint": (actions.JointIn(), actions.joint),
    "return": (actions.ReasonIn(), actions.return_case),
    "supervise": (actions.SuperviseIn(), lambda p, c: actions.supervise(p, c, SYSTEM_CLOCK)),
}


def _rpc_action(case_id: str, action: str, command: dict | None = None) -> str:
    """The access rule an RPC `act` call is judged by: that of its action, as over HTTP."""
    if action not in ACTIONS:
        raise ApiError(422, "invalid_fields", "unknown action", {"action": [f"one of {', '.join(ACTIONS)}"]})
    return f"case.{action}"


class ActionOut(Schema):
    case_id = fields.String(required=True)
    status = fields.String(required=True)
    unit = fields.String(required=True, allow_none=True)
    cadre = fields.String(required=True, allow_none=True)
    events = fields.List(fields.String(), required=True)
    version = fields.Integer(required=True)
    position = fields.Integer(required=True)


class LangQuery(Schema):
    lang = fields.String(load_default="zh", validate=validate.OneOf(("zh", "en")))


class RoutingService(Service, name="routing", follows=RoutingProjection, tables=metadata_obj):
    sweeper = Sweeping()

    def more_health(self, body):
        try:        # a warning only: it never turns the service (or the stack) unhealthy
            with read_transaction(self.ledger.engine) as conn:
                body["checks"]["calendar"] = calendar_health(conn, policy_in_force)
        except Exception as exc:
            body["checks"]["calendar"] = {"status": "unknown", "error": type(exc).__name__}

    def _act(self, request, principal, case_id, action):
        schema, make = ACTIONS[action]
        actions.visible_case(self.ledger, case_id, principal)       # 404 before the body is judged
        command = read_json(request, schema, optional=action == "accept")
        case, recorded = actions.act(self.ledger, SYSTEM_CLOCK, case_id, principal, make(principal, command))
        return json_response(200, _answer(case, recorded))

    @route("POST", "/api/v1/cases/<string:case_id>/accept", action="case.accept",
           body=type(ACTIONS["accept"][0]), response=ActionOut, errors=(409,),
           summary="The holding unit's cadre accepts the case (受理), meeting the response deadline")
    def accept(self, request, principal, case_id):
        return self._act(request, principal, case_id, "accept")

    @route("POST", "/api/v1/cases/<string:case_id>/notes", action="case.note",
           body=type(ACTIONS["note"][0]), response=ActionOut, errors=(409,),
           summary="Note progress; with reply_to, the written reply a supervision requires")
    def note(self, request, principal, case_id):
        return self._act(request, principal, case_id, "note")

    @route("POST", "/api/v1/cases/<string:case_id>/resolve", action="case.resolve",
           body=type(ACTIONS["resolve"][0]), response=ActionOut, errors=(409,),
           summary="The holding cadre resolves the case (办结)")
    def resolve(self, request, principal, case_id):
        return self._act(request, principal, case_id, "resolve")

    @route("POST", "/api/v1/cases/<string:case_id>/escalate", action="case.escalate",
           body=type(ACTIONS["escalate"][0]), response=ActionOut, errors=(409,),
           summary="The holding cadre escalates the case to the next tier (上报), giving a reason")
    def escalate(self, request, principal, case_id):
        return self._act(request, principal, case_id, "escalate")

    @route("POST", "/api/v1/cases/<string:case_id>/transfer", action="case.transfer",
           body=type(ACTIONS["transfer"][0]), response=ActionOut, errors=(409,),
           summary="Transfer to another unit (转办): a cadre within the tier, a supervisor anywhere")
    def transfer(self, request, principal, case_id):
        return self._act(request, principal, case_id, "transfer")

    @route("POST", "/api/v1/cases/<string:case_id>/joint", action="case.joint",
           body=type(ACTIONS["joint"][0]), response=ActionOut, errors=(409,),
           summary="Start joint handling (会诊): the holding unit leads, co-units join")
    def joint(self, request, principal, case_id):
        return self._act(request, principal, case_id, "joint")

    @route("POST", "/api/v1/cases/<string:case_id>/return", action="case.return",
           body=type(ACTIONS["return"][0]), response=ActionOut, errors=(409,),
           summary="Return the case as not ours (退回), for a supervisor to re-dispatch")
    def return_case(self, request, principal, case_id):
        return self._act(request, principal, case_id, "return")

    @route("POST", "/api/v1/cases/<string:case_id>/supervise", action="case.supervise",
           body=type(ACTIONS["supervise"][0]), response=ActionOut, errors=(409,),
           summary="A supervisor chases, supervises or lists the case (催办/督办/挂牌督办)")
    def supervise(self, request, principal, case_id):
        return self._act(request, principal, case_id, "supervise")

    @route("GET", "/api/v1/cases/<string:case_id>/routing", action="case.read", query=LangQuery,
           summary="Why the case is where it is: every routing decision, its rule and its deadlines")
    def routing(self, request, principal, case_id):
        case, events = actions.visible_case(self.ledger, case_id, principal)
        with read_transaction(self.ledger.engine) as conn:
            policy = policy_in_force(conn, case.county)
        return json_response(200, explain(case, events, policy, read_query(request, LangQuery())["lang"]))

    @route("GET", "/api/v1/worklist", action="worklist.read", query=WorklistQuery,
           summary="Open cases of a unit or cadre with their deadlines, overdue first (?unit=&cadre=&status=)")
    def get_worklist(self, request, principal):
        query = read_query(request, WorklistQuery())
        with read_transaction(self.ledger.engine) as conn:
            policy = policy_in_force(conn, principal.county)
            body = worklist(conn, principal, policy, query, SYSTEM_CLOCK.now())
        return json_response(200, body)

    @guarded_rpc(action=_rpc_action)
    def act(self, principal, case_id: str, action: str, command: dict | None = None) -> dict:
        """For other services and integrations: the same action as over HTTP, called as
        `routing.act(token, case_id, action, command)` with a bearer token (minqing.rpc), with the same
        role, state and scope checks. Returns the HTTP answer's body with the HTTP status as `code`."""
        schema, make = ACTIONS[action]
        actions.visible_case(self.ledger, case_id, principal)
        try:
            parsed = schema.load(command or {})
        except ValidationError as exc:
            raise ApiError(422, "invalid_fields", "some fields are missing or invalid", flatten_errors(exc.messages))
        case, recorded = actions.act(self.ledger, SYSTEM_CLOCK, case_id, principal, make(principal, parsed))
        return {"code": 200, **_answer(case, recorded)}

    @guarded_rpc(action="case.read")
    def explain_case(self, principal, case_id: str, lang: str = "zh") -> dict:
        """The routing explanation of a case, as `GET /api/v1/cases/{id}/routing` gives it, called as
        `routing.explain_case(token, case_id)`: a case the token may not read is 404."""
        case, events = actions.visible_case(self.ledger, case_id, principal)
        with read_transaction(self.ledger.engine) as conn:
            policy = policy_in_force(conn, case.county)
        return {"code": 200, **explain(case, events, policy, "en" if lang == "en" else "zh")}
