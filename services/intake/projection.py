"""Intake's projections: the county catalogues it validates reports against, and the open cases a
new report may duplicate (rebuildable from the ledger; registration also writes its own row at once,
so two reports a moment apart see each other)."""
from __future__ import annotations

import json

from sqlalchemy import Connection, select, update

from minqing.county import CountyPolicy
from minqing.ledger import RecordedEvent
from services.intake.tables import counties_table, open_cases_table
from services.intake.duplicates import spot_of

_CLOSING = ("case.resolved", "case.closed", "case.withdrawn")


def most_specific_place(location: dict) -> str:
    return location.get("hamlet") or location.get("village") or location["township"]


class CountyCatalogue:
    name = "intake.counties"
    event_types = frozenset({"policy.published", "case.reported", "case.merged", "case.reopened", *_CLOSING})

    def __init__(self, ledger=None, config=None):
        pass

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        d = event.data
        if event.type == "policy.published":
            conn.execute(counties_table.delete().where(counties_table.c.county == d["county"]))
            conn.execute(counties_table.insert().values(county=d["county"], version=d["version"],
                                                        policy=json.dumps(d["policy"], ensure_ascii=False)))
        elif event.type == "case.reported":
            _fill(conn, d)
        elif event.type == "case.merged":
            conn.execute(update(open_cases_table).where(open_cases_table.c.case_id == d["case_id"])
                         .values(open=False, merged_into=d["into_case_id"]))
        elif event.type in _CLOSING:
            conn.execute(update(open_cases_table).where(open_cases_table.c.case_id == d["case_id"]).values(open=False))
        elif event.type == "case.reopened":
            conn.execute(update(open_cases_table).where(open_cases_table.c.case_id == d["case_id"]).values(open=True))

    @staticmethod
    def drop(conn: Connection) -> None:
        conn.execute(counties_table.delete())
        conn.execute(open_cases_table.delete())


def _fill(conn: Connection, d: dict) -> None:
    """The row of a reported case, when registration did not write it (a rebuild)."""
    exists = conn.execute(select(open_cases_table.c.case_id).where(open_cases_table.c.case_id == d["case_id"])).first()
    if exists is None:
        conn.execute(open_cases_table.insert().values(
            case_id=d["case_id"], county=d["county"], category=d["category"],
            subject=(d.get("reporter") or {}).get("subject"), place=most_specific_place(d["location"]),
            spot=spot_of(d.get("address")), lat=(d.get("coordinates") or {}).get("lat"),
            lon=(d.get("coordinates") or {}).get("lon"), reported_at=d["reported_at"], open=True, merged_into=None))


def load_county(conn: Connection, county: str) -> CountyPolicy | None:
    row = conn.execute(select(counties_table).where(counties_table.c.county == county)).first()
    return CountyPolicy(json.loads(row.policy), row.version) if row else None
