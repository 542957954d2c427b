"""Intake: where residents' matters enter (POST /api/v1/cases), where they are read back, and where
residents track their own case with its tracking number and PIN."""
from __future__ import annotations

import hmac
import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from minqing.logs import EVENTS
from minqing import access, config
from minqing.casefile import fold, stream_of
from minqing.clock import SYSTEM_CLOCK
from minqing.db import read_transaction, write_transaction
from minqing.endpoints import route
from minqing.http import ApiError, json_response, load_json, read_body, read_json, read_query
from minqing.service_base import Service
from minqing.localtime import local_fields, zone_of
from services.intake.projection import CountyCatalogue, load_county
from services.intake.registration import hash_pin, new_credentials, register
from services.intake.schemas import (AccessLogOut, AccessLogQuery, CaseOut, CatalogueOut, ReportIn, ReportOut,
                                     TrackOut, TrackQuery, WeChatOut)
from services.intake.tables import case_access_table, metadata_obj
from services.intake import idempotency, open311, policy_versions, wechat
from services.intake.duplicates import find_requests
from services.intake.caseview import present_case
from services.intake.tracking import present_tracking
from services.intake.open311_http import OPEN311, _o311, _open311
from services.intake.online import OnlineChannel

TRACKING_NO = re.compile(r"^[A-Z]{2,4}-\d{8}-\d{4,6}$")
CATALOGUE_LIMIT = access.RateLimiter(rate_per_second=10.0, burst=50)   # per client address
REPORT_LIMIT = access.RateLimiter(rate_per_second=2.0, burst=30)      # per token
TRACK_LIMIT = access.RateLimiter(rate_per_second=5.0, burst=30)       # per client address
WECHAT_LIMIT = access.RateLimiter(rate_per_second=20.0, burst=100)    # per client address (the account's server)


class IntakeService(OnlineChannel, Service, name="intake", follows=CountyCatalogue, tables=metadata_obj, vault=True):

    @route("POST", "/api/v1/cases", action="case.report", summary="Register a resident's report",
           limiter=REPORT_LIMIT, body=ReportIn, response=ReportOut, status=201)
    def report(self, request, principal):
        key = idempotency.key_of(request.headers)
        report = read_json(request, ReportIn(engine=self.ledger.engine))
        access.authorize(principal, "case.report", report["county"])
        credentials = new_credentials()     # slow, and it yields: before the transaction (issue #12.2)

        def registration(conn) -> idempotency.Answer:
            policy = load_county(conn, report["county"])
            if policy is None:
                raise ApiError(422, "unknown_county", "no such county is configured",
                               {"county": [f"{report['county']!r} is not a configured county"]})
            registered = register(conn, self.ledger, self.vault, policy, report, SYSTEM_CLOCK, principal.actor,
                                  principal.cadre, credentials=credentials)
            return idempotency.Answer(201, {
                "case_id": registered.case_id, "tracking_no": registered.tracking_no, "pin": registered.pin,
                "status": "merged" if registered.merged_into else "reported", "merged_into": registered.merged_into,
                "position": registered.position,
                "links": {"case": f"/api/v1/cases/{registered.case_id}",
                          "track": f"/api/v1/track/{registered.tracking_no}"},
            })

        answer = idempotency.once(self.ledger.engine, self.vault, SYSTEM_CLOCK,
                                  idempotency.scope_of(report["county"], principal.actor), key,
                                  idempotency.fingerprint(report), registration)
        EVENTS.info("case %s at the desk", "answered again (same Idempotency-Key)" if answer.replayed else "reported",
                    extra={"case_id": answer.body["case_id"], "stream": f"case-{answer.body['case_id']}",
                           "position": answer.body.get("position")})
        headers = {"Location": f"/api/v1/cases/{answer.body['case_id']}"}
        if answer.replayed:
            headers[idempotency.REPLAYED] = "true"
        return json_response(answer.status, answer.body, headers=headers)

    @route("POST", "/api/v1/channels/wechat/<string:county>", action="public", limiter=WECHAT_LIMIT,
           body=wechat.WeChatIn, response=WeChatOut, status=201, extra_success=(200,), errors=(401,),
           summary="WeChat channel: a resident's submission forwarded by the county's official account, "
                   "signed with X-Minqing-Signature (HMAC-SHA256); a repeated msg_id returns the case it made")
    def wechat(self, request, principal, county):
        raw = read_body(request)
        with read_transaction(self.ledger.engine) as conn:
            policy = load_county(conn, county)
            if policy is None:
                raise ApiError(404, "not_found", "no such county is configured", {"county": ["unknown"]})
            wechat.verify(conn, self.vault, county, raw, request.headers.get("X-Minqing-Signature"))
        message = load_json(raw, wechat.WeChatIn(policy=policy))
        wechat.check_fresh(message["timestamp"], SYSTEM_CLOCK.now())
        credentials = new_credentials()     # before the transaction (issue #12.2)
        try:
            with write_transaction(self.ledger.engine) as conn:
                earlier = wechat.seen(conn, county, message["msg_id"])
                if earlier is not None:
                    return json_response(200, {**earlier, "status": "already_registered"})
                registered = register(conn, self.ledger, self.vault, policy, wechat.as_report(county, message),
                                      SYSTEM_CLOCK, "channel:wechat", credentials=credentials)
                wechat.remember(conn, county, message["msg_id"], registered.case_id, registered.tracking_no)
        except IntegrityError:      # the same push, retried while the first was being registered: it won
            with read_transaction(self.ledger.engine) as conn:
                earlier = wechat.seen(conn, county, message["msg_id"])
            if earlier is None:
                raise
            return json_response(200, {**earlier, "status": "already_registered"})
        return json_response(201, {"case_id": registered.case_id, "tracking_no": registered.tracking_no,
                                   "pin": registered.pin, "merged_into": registered.merged_into,
                                   "status": "merged" if registered.merged_into else "reported"})

    # ---- Open311 GeoReport v2 (services/intake/open311.py) ----------------------------------------

    def _jurisdiction(self, conn, args):
        county = (args.get("jurisdiction_id") or "").strip()
        if not county:
            raise open311.Open311Error(400, ["jurisdiction_id is required: this endpoint serves several counties"])
        policy = load_county(conn, county)
        if policy is None:
            raise open311.Open311Error(404, [f"jurisdiction_id {county!r} is not served here"])
        return policy

    def _api_key(self, conn, key: str | None, policy, required: bool) -> access.Principal | None:
        if not key:
            if required:
                raise open311.Open311Error(403, ["api_key is required to create a request"])
            return None
        try:
            principal = access.authenticate(conn, f"Bearer {key}")
            access.authorize(principal, "open311.submit", policy.county)
        except ApiError:
            raise open311.Open311Error(403, ["Invalid api_key received -- can't proceed"]) from None
        return principal

    @route("GET", "/open311/v2/services.<string:fmt>", summary="Open311: the services (the county's categories)", **OPEN311)
    @_open311
    def o311_services(self, request, principal, fmt):
        with read_transaction(self.ledger.engine) as conn:
            policy = self._jurisdiction(conn, request.args)
        return _o311("services", open311.services_list(policy), open311.split_format("services." + fmt)[1])

    @route("GET", "/open311/v2/services/<string:service>", summary="Open311: a service definition (its attributes)",
           **OPEN311)
    @_open311
    def o311_service(self, request, principal, service):
        code, fmt = open311.split_format(service)
        with read_transaction(self.ledger.engine) as conn:
            policy = self._jurisdiction(conn, request.args)
        return _o311("service_definition", open311.service_definition(policy, code), fmt)

    @route("POST", "/open311/v2/requests.<string:fmt>", summary="Open311: create a request (form-encoded, api_key)",
           status=201, body="form", **OPEN311)
    @_open311
    def o311_post(self, request, principal, fmt):
        _, fmt = open311.split_format("requests." + fmt)
        key = idempotency.key_of(request.headers)
        form = open311.read_form(read_body(request))
        with read_transaction(self.ledger.engine) as conn:
            policy = self._jurisdiction(conn, form)
            submitter = self._api_key(conn, form.get("api_key"), policy, required=True)
        report = open311.parse_post(form, policy)
        credentials = new_credentials()     # before the transaction (issue #12.2)

        def registration(conn) -> idempotency.Answer:
            current = load_county(conn, policy.county)
            registered = register(conn, self.ledger, self.vault, current, report, SYSTEM_CLOCK, submitter.actor,
                                  credentials=credentials)
            notice = f"受理编号 {registered.tracking_no}，查询码 {registered.pin}（凭此查询办理进度）"
            return idempotency.Answer(201, [{"service_request_id": registered.case_id, "service_notice": notice,
                                             "account_id": form.get("account_id") or None}])

        # GeoReport v2 has no request id of its own: the Idempotency-Key header is the client's
        request_form = {k: v for k, v in form.items() if k != "api_key"}
        answer = idempotency.once(self.ledger.engine, self.vault, SYSTEM_CLOCK,
                                  idempotency.scope_of(policy.county, submitter.actor), key,
                                  idempotency.fingerprint(request_form), registration)
        response = _o311("service_requests", answer.body, fmt, status=answer.status)
        if answer.replayed:
            response.headers[idempotency.REPLAYED] = "true"
        return response

    @route("GET", "/open311/v2/requests.<string:fmt>",
           summary="Open311: requests by id, service code, dates and status (api_key shows every field)", **OPEN311)
    @_open311
    def o311_requests(self, request, principal, fmt):
        _, fmt = open311.split_format("requests." + fmt)
        with read_transaction(self.ledger.engine) as conn:
            policy = self._jurisdiction(conn, request.args)
            detailed = self._api_key(conn, request.args.get("api_key"), policy, required=False) is not None
            filters = open311.parse_filters(request.args, SYSTEM_CLOCK.now())
            ids = find_requests(conn, policy.county, filters, open311.MAX_RESULTS)
        views = [self._view(case_id, policy, detailed) for case_id in ids]
        wanted = set(filters["statuses"]) or {"open", "closed"}
        return _o311("service_requests", [v for v in views if v is not None and v["status"] in wanted], fmt)

    @route("GET", "/open311/v2/requests/<string:service_request>", summary="Open311: one request", **OPEN311)
    @_open311
    def o311_request(self, request, principal, service_request):
        case_id, fmt = open311.split_format(service_request)
        with read_transaction(self.ledger.engine) as conn:
            policy = self._jurisdiction(conn, request.args)
            detailed = self._api_key(conn, request.args.get("api_key"), policy, required=False) is not None
        view = self._view(case_id, policy, detailed)
        if view is None:
            raise open311.Open311Error(404, [f"no request {case_id!r} in this jurisdiction"])
        return _o311("service_requests", [view], fmt)

    @route("GET", "/open311/v2/tokens/<string:token>", summary="Open311: the request a token stands for", **OPEN311)
    @_open311
    def o311_token(self, request, principal, token):
        case_id, fmt = open311.split_format(token)
        with read_transaction(self.ledger.engine) as conn:
            policy = self._jurisdiction(conn, request.args)
        if self._view(case_id, policy, False) is None:
            raise open311.Open311Error(404, [f"no request for token {case_id!r}"])
        return _o311("service_requests", [{"service_request_id": case_id, "token": case_id}], fmt)

    def _view(self, case_id: str, policy, detailed: bool) -> dict | None:
        if len(case_id) > 100:
            return None
        events = self.ledger.read_stream(stream_of(case_id))
        if not events:
            return None
        case = fold(case_id, events)
        if case.county != policy.county:
            return None
        return open311.request_view(case, events, policy, detailed)

    @route("GET", "/api/v1/cases/<string:case_id>", action="case.read", summary="A case's details and history",
           response=CaseOut)
    def get_case(self, request, principal, case_id):
        events = self.ledger.read_stream(stream_of(case_id))
        if not events:
            raise access.not_found()
        case = fold(case_id, events)
        with write_transaction(self.ledger.engine) as conn:
            policy = load_county(conn, case.county)
            if not access.can_read_case(principal, case, policy):
                raise access.not_found()
            access.record_access(conn, principal, case.county, case_id, "case.read")
        return json_response(200, present_case(case, policy))

    @route("GET", "/api/v1/track/<string:tracking_no>", action="public",
           summary="A resident tracks their case with its tracking number and PIN (?pin= or X-Minqing-Pin)",
           limiter=TRACK_LIMIT, query=TrackQuery, response=TrackOut)
    def track(self, request, principal, tracking_no):
        if not TRACKING_NO.match(tracking_no):
            raise ApiError(404, "not_found", "no case matches this tracking number and PIN")
        pin = request.headers.get("X-Minqing-Pin") or request.args.get("pin") or ""
        if not pin:
            raise ApiError(422, "invalid_fields", "the PIN is required", {"pin": ["required"]})
        with read_transaction(self.ledger.engine) as conn:
            row = conn.execute(select(case_access_table).where(case_access_table.c.tracking_no == tracking_no)).first()
        # hash even for an unknown number, so timing does not tell which numbers exist; outside any
        # write transaction, as it yields (issue #12.2)
        digest = hash_pin(pin, row.salt if row is not None else "0" * 16)
        pin_ok = row is not None and hmac.compare_digest(digest, row.pin_hash)
        with write_transaction(self.ledger.engine) as conn:
            refusal = access.pin_attempt(conn, tracking_no, access.client_key(request, config.gateway_secret()), pin_ok)
        if refusal is not None:
            raise refusal
        events = self.ledger.read_stream(stream_of(row.case_id))
        case = fold(row.case_id, events)
        with read_transaction(self.ledger.engine) as conn:
            policy = load_county(conn, case.county)
        lang = "en" if request.args.get("lang") == "en" or request.accept_languages.best == "en" else "zh"
        return json_response(200, present_tracking(case, events, policy, lang))

    @route("GET", "/api/v1/counties/<string:county>", action="public",
           summary="The county's published catalogue: categories, places, units", limiter=CATALOGUE_LIMIT,
           response=CatalogueOut)
    def get_county(self, request, principal, county):
        with read_transaction(self.ledger.engine) as conn:
            policy = load_county(conn, county)
        if policy is None:
            raise ApiError(404, "not_found", "no such county is configured", {"county": ["unknown"]})
        return json_response(200, policy.catalogue())

    # ---- published policy versions and their diff (issue #14 §7; services/intake/policy_versions.py) ----

    def _policy_events(self, principal, county: str) -> tuple[list, str]:
        """The county's published versions and its zone; 404 for another county's (as for a case)."""
        events = policy_versions.published(self.ledger, county) if county == principal.county else []
        if not events:
            raise ApiError(404, "not_found", "no such county is configured", {"county": ["unknown"]})
        return events, zone_of(events[-1].data["policy"])

    @route("GET", "/api/v1/counties/<string:county>/policy/versions", action="policy.read",
           summary="The county's published policy versions: number, digest, when and by whom",
           response=policy_versions.VersionsOut)
    def list_policy_versions(self, request, principal, county):
        events, zone = self._policy_events(principal, county)
        versions = [local_fields(policy_versions.describe(e), ("published_at",), zone) for e in reversed(events)]
        return json_response(200, {"county": county, "timezone": zone, "versions": versions})

    @route("GET", "/api/v1/counties/<string:county>/policy/diff", action="policy.read",
           summary="What changed between two published policy versions (?from=&to=): sections, keys, old → new",
           query=policy_versions.DiffQuery, response=policy_versions.DiffOut)
    def diff_policy_versions(self, request, principal, county):
        events, zone = self._policy_events(principal, county)       # another county's: 404 before any 422
        query = read_query(request, policy_versions.DiffQuery())
        try:
            body = policy_versions.compare(events, query["from_"], query["to"])
        except KeyError as exc:
            latest = events[-1].data["version"]
            raise ApiError(422, "invalid_fields", "no such published version",
                           {name: [f"not a published version (1 to {latest})"] for name in exc.args[0]}) from None
        for side in ("from", "to"):
            body[side] = local_fields(body[side], ("published_at",), zone)
        return json_response(200, {"county": county, "timezone": zone, **body})

    @route("GET", "/api/v1/access-log", action="access_log.read",
           summary="Who read which case's details, when (?case_id=)", query=AccessLogQuery, response=AccessLogOut)
    def access_log(self, request, principal):
        with read_transaction(self.ledger.engine) as conn:
            rows = access.list_access(conn, principal.county, request.args.get("case_id"))
            zone = zone_of(load_county(conn, principal.county))
        return json_response(200, {"county": principal.county, "timezone": zone,
                                   "reads": [local_fields(r, ("at",), zone) for r in rows]})
