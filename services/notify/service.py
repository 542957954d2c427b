"""Notify: tells residents, cadres and supervisors what happened (through its delivery outbox), runs
the 回访, announces on-site days, and serves other systems (webhook subscriptions, the pull feed)."""
from __future__ import annotations

import logging

from werkzeug.wrappers import Response

from minqing import access, cloudevents
from minqing.casefile import fold, stream_of
from minqing.clock import SYSTEM_CLOCK
from minqing.db import read_transaction, write_transaction
from minqing.endpoints import route
from minqing.http import ApiError, json_response, load_json, read_body, read_json, read_query
from minqing.service_base import Service
from services.notify import followup, inbound, subscriptions
from services.notify.followup_queue import FollowUpsQuery, follow_up_queue
from services.notify.outbox import list_outbox
from services.notify.rating import RatingRoutes
from services.notify.rules import NotificationRules, policy_for
from services.notify.schemas import (EventsQuery, FollowUpIn, FollowUpOut, OutboxQuery, SubscriptionIn, SubscriptionList,
                                     SubscriptionOut)
from services.notify.tables import metadata_obj
from services.notify.worker import Worker

log = logging.getLogger("minqing.notify")
SMS_LIMIT = access.RateLimiter(rate_per_second=20.0, burst=100)    # per client address (the SMS gateway)


class NotifyService(RatingRoutes, Service, name="notify", follows=NotificationRules, tables=metadata_obj, vault=True):
    worker = Worker()

    @route("GET", "/api/v1/events", action="events.read", query=EventsQuery,
           summary="The county's events as CloudEvents, in ledger order (?after=N&limit=M), for systems that poll")
    def events(self, request, principal):
        query = read_query(request, EventsQuery())
        after, limit = query["after"], query["limit"]
        scanned = self.ledger.read_all(after, limit)
        mine = [cloudevents.to_cloudevent(e) for e in scanned if e.county == principal.county]
        return json_response(200, {"county": principal.county, "events": mine,
                                   "next_after": scanned[-1].position if scanned else after})

    @route("GET", "/api/v1/notifications", action="notifications.read", query=OutboxQuery,
           summary="The delivery outbox of the token's county (?status=pending|sent|failed); failed ones are "
                   "retried with `minqing notify retry`")
    def notifications(self, request, principal):
        status = read_query(request, OutboxQuery())["status"]
        with read_transaction(self.ledger.engine) as conn:
            rows = list_outbox(conn, principal.county, status)
        return json_response(200, {"notifications": rows})

    @route("GET", "/api/v1/follow-ups", action="follow_up.read", query=FollowUpsQuery,
           summary="The 回访 queue: delivered results waiting for the resident's rating, due and overdue, with "
                   "time since delivery and asks so far (?county=&state=due|overdue|all)")
    def follow_ups(self, request, principal):
        query = read_query(request, FollowUpsQuery())
        with read_transaction(self.ledger.engine) as conn:
            body = follow_up_queue(conn, self.ledger, principal, query, SYSTEM_CLOCK.now())
        return json_response(200, body)

    @route("POST", "/api/v1/cases/<string:case_id>/follow-up", action="case.follow_up", body=FollowUpIn,
           response=FollowUpOut, status=201, errors=(404, 409),
           summary="回访 entered by an operator after a call: the rating of the case's delivered result and, "
                   "when asked, whether it was actually solved")
    def follow_up(self, request, principal, case_id):
        given = read_json(request, FollowUpIn())
        rating = followup.REPLY_CODES.get(given["rating"], given["rating"])
        case = fold(case_id, self.ledger.read_stream(stream_of(case_id)))
        if case.version == 0 or case.county != principal.county:
            raise access.not_found()
        try:
            position = followup.record_follow_up(self.ledger, case_id, rating, given["via"],
                                                 actor=principal.actor, county=case.county, by=principal.actor,
                                                 solved=given["solved"])
        except followup.NotAwaiting as exc:
            raise ApiError(409, "conflict", str(exc), {"case_id": [f"status is {exc.status}"]})
        return json_response(201, {"case_id": case_id, "rating": rating, "solved": given["solved"],
                                   "position": position})

    @route("POST", "/api/v1/channels/sms/<string:county>", action="public", limiter=SMS_LIMIT,
           body=inbound.SmsReplyIn, response=inbound.SmsReplyOut, errors=(401, 404),
           summary="Inbound SMS from the county's SMS gateway, signed with X-Minqing-Signature (HMAC-SHA256): "
                   "a reply code rates the sender's open 回访 (two digits: solved 1/2 then satisfaction 1/2/3, "
                   "e.g. 11; one digit: satisfaction only); a repeated msg_id answers as before")
    def sms_reply(self, request, principal, county):
        raw = read_body(request)
        with read_transaction(self.ledger.engine) as conn:
            if policy_for(conn, county) is None:
                raise ApiError(404, "not_found", "no such county is configured", {"county": ["unknown"]})
            inbound.verify(conn, self.vault, county, raw, request.headers.get("X-Minqing-Signature"))
        message = load_json(raw, inbound.SmsReplyIn())
        now = SYSTEM_CLOCK.now()
        inbound.check_fresh(message["timestamp"], now)
        with read_transaction(self.ledger.engine) as conn:
            earlier = inbound.seen(conn, county, message["msg_id"])
            if earlier is not None:
                return json_response(200, {**earlier, "rating": None, "solved": None})
            subject = self.vault.subject_for_phone(conn, message["sender"])
            pending = followup.awaiting_reply(conn, county, subject) if subject else None
        reply = followup.reply_code(message["text"])
        outcome, reason, case_id = "ignored", None, pending.case_id if pending else None
        if pending is None:
            reason = "no follow-up is waiting for this sender's reply"
        elif reply is None:
            reason = ("not a reply code (two digits: solved 1 yes / 2 no, then 1 satisfied / 2 basically satisfied / "
                      "3 unsatisfied, e.g. 11; or one digit for satisfaction only)")
        else:
            try:
                followup.record_follow_up(self.ledger, pending.case_id, reply.rating, "sms", actor="channel:sms",
                                          county=county, asks=pending.asks, solved=reply.solved)
                outcome = "rated"
            except followup.NotAwaiting as exc:
                reason = str(exc)
        with write_transaction(self.ledger.engine) as conn:
            inbound.remember(conn, county, message["msg_id"], outcome, reason, case_id, now)
        log.info("sms reply %s for %s: %s", message["msg_id"], county, outcome)
        rated = outcome == "rated"
        return json_response(200, {"outcome": outcome, "reason": reason, "case_id": case_id,
                                   "rating": reply.rating if rated else None, "solved": reply.solved if rated else None})

    @route("POST", "/api/v1/subscriptions", action="subscriptions.manage", body=SubscriptionIn,
           response=SubscriptionOut, status=201,
           summary="Register a webhook: CloudEvents of the token's county, filtered by type, signed with a "
                   "per-subscription secret (returned once)")
    def subscribe(self, request, principal):
        given = read_json(request, SubscriptionIn())
        try:
            with write_transaction(self.ledger.engine) as conn:
                sub, secret = subscriptions.register(conn, self.ledger, self.vault, SYSTEM_CLOCK,
                                                     county=principal.county, url=given["url"], types=given["types"],
                                                     description=given["description"], created_by=principal.actor,
                                                     from_start=given["from_start"])
        except subscriptions.SubscriptionError as exc:
            raise ApiError(422, "invalid_fields", "the subscription cannot be registered", exc.errors)
        return json_response(201, {**sub, "secret": secret})

    @route("GET", "/api/v1/subscriptions", action="subscriptions.manage", response=SubscriptionList,
           summary="The token's county's webhook subscriptions, with each one's delivery position and last error")
    def list_subscriptions(self, request, principal):
        with read_transaction(self.ledger.engine) as conn:
            return json_response(200, {"subscriptions": subscriptions.list_for(conn, principal.county)})

    @route("GET", "/api/v1/subscriptions/<string:sub_id>", action="subscriptions.manage", response=SubscriptionOut,
           errors=(404,), summary="One webhook subscription")
    def get_subscription(self, request, principal, sub_id):
        with read_transaction(self.ledger.engine) as conn:
            sub = subscriptions.get(conn, principal.county, sub_id)
        if sub is None:
            raise ApiError(404, "not_found", "no such subscription", {"sub_id": ["unknown"]})
        return json_response(200, sub)

    @route("DELETE", "/api/v1/subscriptions/<string:sub_id>", action="subscriptions.manage", errors=(404,),
           status=204, summary="Remove a webhook subscription: nothing more is sent to it")
    def unsubscribe(self, request, principal, sub_id):
        with write_transaction(self.ledger.engine) as conn:
            removed = subscriptions.remove(conn, principal.county, sub_id)
        if not removed:
            raise ApiError(404, "not_found", "no such subscription", {"sub_id": ["unknown"]})
        return Response(status=204)
