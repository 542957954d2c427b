"""The one base of Minqing's nameko services: what every service has, so that its `service.py` shows
only its own entrypoints.

    class RoutingService(Service, name="routing", follows=RoutingProjection, tables=metadata_obj):
        sweeper = Sweeping()

        @route("POST", "/api/v1/cases/<string:case_id>/accept", action="case.accept", ...)
        def accept(self, request, principal, case_id): ...

gives the class, from minqing.service_kit:
- `name` (nameko's service name, and the queue `minqing.<name>`);
- `ledger` (LedgerProvider: the ledger, creating `tables` and the kernel's tables at start);
- `vault` (VaultProvider) when `vault=True`;
- `dead_letters` (DeadLetters: the copy of rejected messages and parked events);
- `following` (Following: the follower that keeps the `follows` projection up to date);
- `on_event`: the broker entrypoint on `minqing.<name>`, bound to the event types the projection
  follows; a message only wakes the follower;
- `GET /metrics` and `GET /health` (the ledger, the broker, the projection's lag, parked events);
  a service adds checks of its own by overriding `more_health(body)`;
- `GET /api/v1/parked/<name>` and `POST /api/v1/parked/<name>/<position>/retry`: the county's
  parked events of the projection and their retry, for its admin (minqing.parked_api).

The entrypoints are made per class (nameko registers an entrypoint on the function it decorates), so
two services never share one.
"""
from __future__ import annotations

from sqlalchemy import MetaData

from minqing import parked_api
from minqing.endpoints import route
from minqing.http import json_response
from minqing.service_kit import (DeadLetters, Following, LedgerProvider, VaultProvider, consume_events, health,
                                 metrics_response, service_queue)


class Service:
    """Subclass with `name=`, `follows=` (a projection class with `event_types`), `tables=` (the
    service's MetaData) and optionally `vault=True`."""

    name: str

    def __init_subclass__(cls, *, name: str, follows, tables: MetaData, vault: bool = False, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name = name
        cls.ledger = LedgerProvider(tables)
        if vault:
            cls.vault = VaultProvider()
        cls.dead_letters = DeadLetters()
        cls.following = Following(follows)
        cls.on_event = _on_event(name, follows)
        cls.metrics = _metrics()
        cls.health = _health(name)
        cls.parked, cls.retry_parked = parked_api.list_route(name), parked_api.retry_route(name)

    def more_health(self, body: dict) -> None:
        """Add checks of the service's own to its /health body (`body["checks"]`); none by default."""


def _on_event(name: str, follows):
    def on_event(self, body):
        self.following.on_message(body, self.dead_letters)
    return consume_events(service_queue(name, follows.event_types))(on_event)


def _metrics():
    def metrics(self, request, principal):
        return metrics_response()
    return route("GET", "/metrics", action="public", summary="Prometheus metrics of this service")(metrics)


def _health(name: str):
    def health_(self, request, principal):
        status, body = health(self.name, self.ledger, self.dead_letters.amqp_uri, self.following.follower)
        self.more_health(body)
        return json_response(status, body)
    health_.__name__ = "health"
    return route("GET", "/health", action="public", summary=f"Health of the {name} service")(health_)
