"""Notify: tells residents and cadres what happened, through its delivery outbox."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

import logging

from nameko.timer import timer

from minqing.clock import SYSTEM_CLOCK
from minqing.db import read_transaction
from minqing.endpoints import route
from minqing import cloudevents
from minqing.http import json_response, read_query
from minqing.service_kit import consume_events, DeadLetters, Following, LedgerProvider, VaultProvider, health, service_queue, metrics_response
from services.notify.channels import LogChannel
from services.notify.outbox import NotificationRules, deliver_due, list_outbox
from services.notify.tables import metadata_obj

log = logging.getLogger("minqing.notify")


class EventsQuery(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**62))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class OutboxQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(("pending", "sent", "failed")))


class NotifyService:
    name = "notify"
    ledger = LedgerProvider(metadata_obj)
    vault = VaultProvider()
    dead_letters = DeadLetters()
    rules = Following(NotificationRules)
    channels = {"log": LogChannel()}

    @consume_events(service_queue("notify", NotificationRules.event_types))
    def on_event(self, body):
        self.rules.on_message(body, self.dead_letters)

    @timer(interval=0.5)
    def deliver(self):
        deliver_due(self.ledger, self.vault, self.channels, SYSTEM_CLOCK)

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
           summary="The delivery outbox of the token's county (?status=pending|sent|failed)")
    def notifications(self, request, principal):
        status = read_query(request, OutboxQuery())["status"]
        with read_transaction(self.ledger.engine) as conn:
            rows = list_outbox(conn, principal.county, status)
        for row in rows:
            row.pop("recipient_ref", None)
        return json_response(200, {"notifications": rows})
