"""Intake's projection: the county catalogues it validates reports against."""
from __future__ import annotations

import json

from sqlalchemy import Connection, select

from minqing.county import CountyPolicy
from minqing.ledger import RecordedEvent
from services.intake.tables import counties_table


class CountyCatalogue:
    name = "intake.counties"
    event_types = frozenset({"policy.published"})

    def __init__(self, ledger=None, config=None):
        pass

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        d = event.data
        conn.execute(counties_table.delete().where(counties_table.c.county == d["county"]))
        conn.execute(counties_table.insert().values(county=d["county"], version=d["version"],
                                                    policy=json.dumps(d["policy"], ensure_ascii=False)))

    @staticmethod
    def drop(conn: Connection) -> None:
        conn.execute(counties_table.delete())


def load_county(conn: Connection, county: str) -> CountyPolicy | None:
    row = conn.execute(select(counties_table).where(counties_table.c.county == county)).first()
    return CountyPolicy(json.loads(row.policy), row.version) if row else None
