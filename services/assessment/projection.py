"""Per-cadre counts derived from the event log: cases assigned, resolved, resolved on time.

Time comes from events (principle 6): a resolution is on time when the `case.resolved` event was
recorded no later than the `resolution_due` of the assignment in force.
"""
from __future__ import annotations

from sqlalchemy import Connection, select, update

from minqing.clock import parse_instant
from minqing.ledger import RecordedEvent
from services.assessment.tables import cadre_counts_table, holdings_table


def _bump(conn: Connection, county: str, cadre: str, unit: str, **increments: int) -> None:
    table = cadre_counts_table
    where = (table.c.county == county) & (table.c.cadre == cadre)
    if conn.execute(select(table.c.cadre).where(where)).first() is None:
        conn.execute(table.insert().values(county=county, cadre=cadre, unit=unit, assigned=0, resolved=0,
                                           resolved_on_time=0))
    conn.execute(update(table).where(where).values(
        unit=unit, **{name: getattr(table.c, name) + n for name, n in increments.items()}))


class CadreCounts:
    name = "assessment.cadre_counts"
    event_types = frozenset({"case.assigned", "case.transferred", "case.escalated", "case.resolved"})

    def __init__(self, ledger=None, config=None):
        pass

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        d = event.data
        if event.type == "case.assigned":
            cadre, unit, due = d["cadre"], d["unit"], d["resolution_due"]
        elif event.type in ("case.transferred", "case.escalated"):
            cadre, unit, due = d["to_cadre"], d["to_unit"], d["resolution_due"]
        else:
            holding = conn.execute(select(holdings_table).where(holdings_table.c.case_id == d["case_id"])).first()
            on_time = holding is not None and parse_instant(event.recorded_at) <= parse_instant(holding.resolution_due)
            _bump(conn, event.county, d["cadre"], d["unit"], resolved=1, resolved_on_time=int(on_time))
            return
        conn.execute(holdings_table.delete().where(holdings_table.c.case_id == d["case_id"]))
        conn.execute(holdings_table.insert().values(case_id=d["case_id"], cadre=cadre, resolution_due=due))
        _bump(conn, event.county, cadre, unit, assigned=1)

    @staticmethod
    def drop(conn: Connection) -> None:
        conn.execute(cadre_counts_table.delete())
        conn.execute(holdings_table.delete())


def scorecards(conn: Connection, county: str, cadre: str | None = None) -> list[dict]:
    query = select(cadre_counts_table).where(cadre_counts_table.c.county == county)
    if cadre:
        query = query.where(cadre_counts_table.c.cadre == cadre)
    rows = conn.execute(query.order_by(cadre_counts_table.c.cadre)).mappings().all()
    return [{"cadre": r["cadre"], "unit": r["unit"], "assigned": r["assigned"], "resolved": r["resolved"],
             "resolved_on_time": r["resolved_on_time"],
             "resolution_rate": round(r["resolved"] / r["assigned"], 4) if r["assigned"] else None,
             "on_time_rate": round(r["resolved_on_time"] / r["resolved"], 4) if r["resolved"] else None}
            for r in rows]
