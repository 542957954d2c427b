"""Notify: tells residents, cadres and supervisors what happened (through its delivery outbox), runs
the 回访, announces on-site days, and serves other systems (webhook subscriptions, the pull feed)."""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Histogram
from werkzeug.wrappers import Response

from minqing import access, cloudevents, ledger_listen
from minqing.casefile import fold, stream_of
from minqing.clock import SYSTEM_CLOCK, demo_clock_configured
from minqing.db import read_transaction, write_transaction
from minqing.endpoints import route
from minqing.http import ApiError, json_response, load_json, read_body, read_json, read_query
from minqing.service_kit import (DeadLetters, Following, LedgerProvider, VaultProvider, consume_events, health,
                                 metrics_response, service_queue)
from services.notify import announcements, followup, inbound, subscriptions
from services.notify.followup_queue import FollowUpsQuery, follow_up_queue
from services.notify.channels import build_channels
from services.notify.outbox import deliver_due, list_outbox
from services.notify.rules import NotificationRules, policy_for
from services.notify.settings import load as load_settings
from services.notify.tables import metadata_obj

log = logging.getLogger("minqing.notify")
SENT = Counter("minqing_notify_delivered_total", "Notifications delivered by the outbox")
WEBHOOKS = Counter("minqing_notify_webhook_deliveries_total", "Events delivered to webhook subscribers")
ROUND = Histogram("minqing_notify_round_seconds", "Duration of one notify work round")
IDLE_PAUSE_SECONDS = 4.0      # the longest pause between rounds of an idle loop (issue #16: idle is idle)
SMS_LIMIT = access.RateLimiter(rate_per_second=20.0, burst=100)    # per client address (the SMS gateway)


class EventsQuery(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**62))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class OutboxQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(("pending", "claimed", "sending", "sent", "failed")))


class FollowUpIn(Schema):
    rating = fields.String(required=True, validate=validate.OneOf(
        ("1", "2", "3", "satisfied", "basically_satisfied", "unsatisfied", "unreachable")),
        metadata={"description": "the reply code (1 satisfied, 2 basically satisfied, 3 unsatisfied) or the rating"})
    via = fields.String(load_default="call", validate=validate.OneOf(("call", "visit", "online", "sms")))
    solved = fields.Boolean(load_default=None, allow_none=True, truthy={True}, falsy={False},
                            metadata={"description": "the resident's answer whether the matter was actually solved "
                                                     "(解决率); optional: omitted or null when not asked"})

    @validates_schema
    def _solved_needs_an_answer(self, data, **_):
        if data.get("rating") == "unreachable" and data.get("solved") is not None:
            raise ValidationError({"solved": ["an unreachable resident gave no answer; leave it out"]})


class FollowUpOut(Schema):
    case_id = fields.String(required=True)
    rating = fields.String(required=True)
    solved = fields.Boolean(allow_none=True)
    position = fields.Integer(required=True)


class SubscriptionIn(Schema):
    url = fields.String(required=True, validate=validate.Length(min=8, max=2000))
    types = fields.List(fields.String(validate=validate.Length(min=1, max=100)), load_default=lambda: ["case.*"],
                        validate=validate.Length(min=1, max=50))
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    from_start = fields.Boolean(load_default=False, metadata={"description": "deliver the county's whole history first"})


class SubscriptionOut(Schema):
    id = fields.String(required=True)
    county = fields.String(required=True)
    url = fields.String(required=True)
    types = fields.List(fields.String(), required=True)
    description = fields.String(allow_none=True)
    status = fields.String(required=True)
    position = fields.Integer(required=True)
    delivered = fields.Integer(required=True)
    failures = fields.Integer(required=True)
    next_attempt_at = fields.String(required=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.String(required=True)
    secret = fields.String(metadata={"description": "only in the answer to the registration: keep it"})


class SubscriptionList(Schema):
    subscriptions = fields.List(fields.Nested(SubscriptionOut), required=True)


class Worker(DependencyProvider):
    """The sender, the 回访 timer, the on-site announcements and the webhook deliveries, every
    MINQING_NOTIFY_SECONDS in a managed thread (each step isolated: one failing does not stop the rest)."""

    def setup(self):
        provider = next(d for d in self.container.dependencies if isinstance(d, LedgerProvider))
        vault = next(d for d in self.container.dependencies if isinstance(d, VaultProvider))
        self.ledger_provider, self.vault_provider = provider, vault
        self.settings = load_settings()
        self.channels = build_channels(self.settings)
        self._running = False

    def start(self):
        self._running = True
        ledger, vault, s = self.ledger_provider.ledger, self.vault_provider.vault, self.settings
        # two loops, so a slow or unreachable subscriber never holds up residents' and cadres' messages
        self.container.spawn_managed_thread(lambda: self._loop(NotificationRules.event_types, (
            ("deliver", lambda: SENT.inc(deliver_due(ledger, vault, self.channels, SYSTEM_CLOCK,
                                                     max_attempts=s.max_attempts, backoff_seconds=s.backoff_seconds,
                                                     lease=timedelta(seconds=s.lease_seconds)))),
            ("follow-up", lambda: followup.advance(ledger, SYSTEM_CLOCK)),
            ("announce", lambda: announcements.announce(ledger, SYSTEM_CLOCK)),
        )), identifier="notify-outbox")
        self.container.spawn_managed_thread(lambda: self._loop(None, (
            ("webhooks", lambda: WEBHOOKS.inc(subscriptions.deliver_round(ledger, vault, SYSTEM_CLOCK,
                                                                          timeout=s.webhook_timeout))),
        )), identifier="notify-webhooks")

    def stop(self):
        self._running = False

    kill = stop

    def _loop(self, types, steps):
        """Rounds every MINQING_NOTIFY_SECONDS while the ledger moves; on PostgreSQL, when appends of
        `types` stop, the pause doubles up to idle_pause (a due retry or 回访 waits at most that long)
        and an append wakes the loop at once (minqing.ledger_listen). Demo clocks keep the short pause."""
        woken = threading.Event()
        listening = ledger_listen.subscribe(self.ledger_provider.ledger.engine, woken.set, types)
        idle_pause = self.settings.interval if not listening or demo_clock_configured() else \
            max(self.settings.interval, IDLE_PAUSE_SECONDS)
        pause = self.settings.interval
        try:
            while self._running:
                started = time.perf_counter()
                for name, step in steps:
                    try:
                        step()
                    except Exception:
                        log.exception("notify %s step failed; retrying next round", name)
                ROUND.observe(time.perf_counter() - started)
                if woken.wait(pause):
                    # a busy ledger wakes us at every append: still at most one round per interval
                    pause = self.settings.interval
                    rest = pause - (time.perf_counter() - started)
                    if rest > 0:
                        time.sleep(rest)
                else:
                    pause = min(pause * 2, idle_pause)
                woken.clear()
        finally:
            ledger_listen.unsubscribe(self.ledger_provider.ledger.engine, woken.set)

    def get_dependency(self, worker_ctx):
        return self


class NotifyService:
    name = "notify"
    ledger = LedgerProvider(metadata_obj)
    vault = VaultProvider()
    dead_letters = DeadLetters()
    rules = Following(NotificationRules)
    worker = Worker()

    @consume_events(service_queue("notify", NotificationRules.event_types))
    def on_event(self, body):
        self.rules.on_message(body, self.dead_letters)

    @route("GET", "/metrics", action="public", summary="Prometheus metrics of this service")
    def metrics(self, request, principal):
        return metrics_response()

    @route("GET", "/health", action="public", summary="Health of the notify service")
    def health(self, request, principal):
        status, body = health(self.name, self.ledger, self.dead_letters.amqp_uri, self.rules.follower)
        return json_response(status, body)

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
