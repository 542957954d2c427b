"""Parked events over HTTP (issue #14 §7): each service lists what its projection parked or held and
retries one stream, as `minqing consumer parked NAME` and `minqing consumer retry NAME --position P`
do, for the admin of a county (access action `parked.manage`).

    GET  /api/v1/parked/<service>                      the county's parked and held events of the service
    POST /api/v1/parked/<service>/<position>/retry     apply that event's stream again (minqing.consumer.retry)

Each service answers for its own projection (the one its follower keeps), so the retry runs in the
process that owns the tables it writes, beside the running follower (the checkpoint row is locked as
the follower locks it). Paths name the service, because the gateway routes by path.

**County scope.** `consumer_parked` rows are deployment-wide; an admin sees and retries only the rows
whose event belongs to their county (the ledger event's metadata), and a position of another county
answers 404 like one that does not exist. A position of the county with nothing parked answers 409
(`not_parked`: somebody retried it already, or it was never parked).

**What is shown.** A row names the event (position, type, stream, id), when it was set aside, whether
it is parked or held (and behind what), and the error text — the driver's or the projection's one-line
message (minqing.consumer.describe), never the event's data. Events carry no personal data
(DESIGN principle 8), so neither does anything here.
"""
from __future__ import annotations

import json

from marshmallow import Schema, fields
from sqlalchemy import select

from minqing import consumer, parking
from minqing.db import read_transaction
from minqing.endpoints import route
from minqing.http import ApiError, json_response
from minqing.ledger import events_table
from minqing.localtime import local_iso, zone_of


class ParkedOut(Schema):
    service = fields.String(required=True)
    consumer = fields.String(required=True)
    county = fields.String(required=True)
    timezone = fields.String(required=True)        # `parked_at` is local time with the offset
    events = fields.List(fields.Dict(), required=True)


class RetryOut(Schema):
    service = fields.String(required=True)
    consumer = fields.String(required=True)
    position = fields.Integer(required=True)
    outcomes = fields.List(fields.Dict(), required=True)
    left = fields.Integer(required=True)


def counties_of(engine, positions: list[int]) -> dict[int, str]:
    """{position: the county of the event there} (from the ledger event's metadata)."""
    if not positions:
        return {}
    with read_transaction(engine) as conn:
        rows = conn.execute(select(events_table.c.position, events_table.c.metadata)
                            .where(events_table.c.position.in_(sorted(set(positions))))).all()
    return {position: (json.loads(meta) or {}).get("county") for position, meta in rows}


def county_rows(engine, name: str, county: str, zone: str | None = None) -> list[dict]:
    """The parked and held rows of consumer `name` whose events are `county`'s, in position order
    (`parked_at` in `zone`, UTC when none is given)."""
    rows = parking.list_parked(engine, name)
    owner = counties_of(engine, [r["position"] for r in rows])
    return [{"position": r["position"], "event_id": r["event_id"], "type": r["type"], "stream": r["stream"],
             "state": "held" if r["held_behind"] is not None else "parked", "held_behind": r["held_behind"],
             "error": r["error"], "parked_at": local_iso(r["parked_at"], zone) if zone else r["parked_at"]}
            for r in rows if owner.get(r["position"]) == county]


def county_zone(ledger, county: str) -> str:
    """The county's zone, from its latest published policy (the default zone when none is published)."""
    published = [e for e in ledger.read_stream(f"county-{county}") if e.type == "policy.published"]
    return zone_of(published[-1].data["policy"] if published else None)


def retry_one(ledger, projection, county: str, position: int) -> dict:
    """Retry the stream of the parked or held event at `position` (ApiError 404: not the county's;
    409: nothing parked there). Returns {outcomes, left}."""
    if counties_of(ledger.engine, [position]).get(position) != county:
        raise ApiError(404, "not_found", "no event of this county at that position", {"position": ["unknown"]})
    try:
        outcomes = consumer.retry(ledger, projection, position=position)
    except LookupError:
        raise ApiError(409, "not_parked", "nothing is parked or held at that position (retried already?)") from None
    return {"outcomes": outcomes, "left": len(county_rows(ledger.engine, projection.name, county))}


def list_route(name: str):
    def parked(self, request, principal):
        follower = self.following.follower
        zone = county_zone(self.ledger, principal.county)
        return json_response(200, {"service": self.name, "consumer": follower.name, "county": principal.county,
                                   "timezone": zone,
                                   "events": county_rows(self.ledger.engine, follower.name, principal.county, zone)})
    parked.__name__ = "parked"
    return route("GET", f"/api/v1/parked/{name}", action="parked.manage", response=ParkedOut,
                 summary=f"Events the {name} service parked (kept failing) or held behind them, of the county")(parked)


def retry_route(name: str):
    def retry_parked(self, request, principal, position):
        if not (position.isascii() and position.isdigit()) or len(position) > 18:
            raise ApiError(404, "not_found", "no event of this county at that position", {"position": ["unknown"]})
        follower = self.following.follower
        position = int(position)
        done = retry_one(self.ledger, follower.projection, principal.county, position)
        return json_response(200, {"service": self.name, "consumer": follower.name, "position": position, **done})
    retry_parked.__name__ = "retry_parked"
    return route("POST", f"/api/v1/parked/{name}/<string:position>/retry", action="parked.manage", response=RetryOut,
                 errors=(409,),
                 summary=f"Apply again the stream of a parked or held event of the {name} service "
                         f"(after fixing the cause)")(retry_parked)
