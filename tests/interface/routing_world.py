"""A routing world on a real database with an injected clock: the three sample counties published,
routing following the ledger, and the timer sweep — driven by hand, so a month passes in a test."""
from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from minqing import access, county
from minqing.casefile import fold, stream_of
from minqing.clock import ManualClock, isoformat, parse_instant
from minqing.consumer import Follower
from minqing.db import make_engine
from minqing.ledger import Ledger, Metadata, NewEvent
from minqing.service_kit import create_tables
from services.routing import actions
from services.routing.projection import RoutingProjection
from services.routing.sweep import Sweeper
from services.routing.tables import metadata_obj as routing_tables

COUNTIES = Path(__file__).resolve().parents[2] / "deploy" / "counties"


class RoutingWorld:
    def __init__(self, url: str, start: datetime):
        self.engine = make_engine(url)
        create_tables(self.engine, routing_tables)
        self.clock = ManualClock(start)
        self.ledger = Ledger(self.engine, self.clock)
        for name in ("longjiang", "ziyang", "luyang"):
            county.publish(self.ledger, county.read_policy_file(COUNTIES / f"{name}.yaml"), "test:suite")
        self.follower = Follower(self.ledger, RoutingProjection(self.ledger))
        self.sweeper = Sweeper(self.ledger, self.clock)
        self.settle()

    def settle(self) -> None:
        self.follower.catch_up()

    def report(self, county_id: str, category: str, township: str, village: str | None = None,
               hamlet: str | None = None, at: datetime | None = None) -> str:
        if at is not None:
            self.clock.set(at)
        case_id = str(uuid.uuid4())
        data = {"case_id": case_id, "county": county_id, "tracking_no": f"T-{case_id[:8]}", "channel": "hotline",
                "category": category, "kind": "help", "urgency": "normal", "summary": "测试诉求",
                "location": {"township": township, "village": village, "hamlet": hamlet},
                "reporter": {"subject": "r-1", "name_masked": "张*", "phone_masked": "138****0000"},
                "reported_at": isoformat(self.clock.now())}
        self.ledger.append(stream_of(case_id), [NewEvent("case.reported", data, Metadata("operator:t", county_id))], 0)
        self.settle()
        return case_id

    def at(self, moment: datetime | str) -> None:
        """Move the clock to `moment` and run the sweep until nothing more falls due."""
        self.clock.set(parse_instant(moment) if isinstance(moment, str) else moment)
        for _ in range(10):
            self.settle()
            if not self.sweeper.sweep().appended:
                break
        self.settle()

    def case(self, case_id: str):
        return fold(case_id, self.ledger.read_stream(stream_of(case_id)))

    def types(self, case_id: str) -> list[str]:
        return [e.type for e in self.ledger.read_stream(stream_of(case_id))]

    def last(self, case_id: str, type_: str) -> dict:
        return [e for e in self.ledger.read_stream(stream_of(case_id)) if e.type == type_][-1].data

    def cadre(self, county_id: str, unit: str, cadre: str) -> access.Principal:
        return access.Principal(token_id=f"t-{cadre}", role="cadre", county=county_id, unit=unit, cadre=cadre)

    def do(self, case_id: str, principal, decide):
        _, recorded = actions.act(self.ledger, self.clock, case_id, principal, decide)
        self.settle()
        return recorded

    def close(self):
        self.engine.dispose()
