"""The operations exporter: the figures an on-call person and the county's dashboards need that no
single service can give, served as Prometheus metrics by one small process of its own
(`python -m minqing.exporter`, /metrics on MINQING_LISTEN_ADDRESS:MINQING_EXPORTER_PORT, default 127.0.0.1:MINQING_HTTP_PORT+6).

It is an operator's tool in the shell layer, like `minqing notify list`: it reads the ledger (head,
reports, 回访 ratings) and, read-only, routing's and notify's tables (open and overdue cases per
township, the outbox). No service depends on it; it writes nothing.

Counters are computed from the ledger, so they never reset: a restarted exporter reads the ledger
again from the start (cheap at a county's scale: a year is ~100,000 events) and reports the same
totals. Label values are counties, channels, townships, ratings and statuses — never a person.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections import Counter as Tally
from datetime import datetime, timezone

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import case, func, select

log = logging.getLogger("minqing.exporter")
TALLIED = ("case.reported", "case.followed_up")


class OperationsCollector:
    """A prometheus_client collector; each scrape reads what the ledger gained since the last one."""

    def __init__(self, ledger, now=lambda: datetime.now(timezone.utc)):
        self.ledger = ledger
        self.now = now
        self.position = 0
        self.reported: Tally = Tally()       # (county, channel) -> cases reported
        self.followups: Tally = Tally()      # (county, rating) -> 回访 recorded
        self.lock = threading.Lock()

    def _tally(self) -> None:
        while True:
            events = self.ledger.read_all(self.position, 5000, types=TALLIED)
            if not events:
                return
            for event in events:
                county = event.data.get("county") or event.metadata.county or "unknown"
                if event.type == "case.reported":
                    self.reported[(county, str(event.data.get("channel", "unknown")))] += 1
                else:
                    self.followups[(county, str(event.data.get("rating", "unknown")))] += 1
            self.position = events[-1].position

    def _tables(self):
        """(open/overdue per county and township, outbox per county and status, oldest due outbox row)."""
        from services.notify.tables import outbox_table
        from services.routing.tables import cases_table
        c, o = cases_table, outbox_table
        with self.ledger.engine.connect() as conn:
            cases = conn.execute(select(c.c.county, c.c.township, func.count(),
                                        func.sum(case((c.c.overdue.is_(True), 1), else_=0)))
                                 .where(c.c.is_open.is_(True)).group_by(c.c.county, c.c.township)).all()
            outbox = conn.execute(select(o.c.county, o.c.status, func.count()).group_by(o.c.county, o.c.status)).all()
            oldest = conn.execute(select(o.c.county, func.min(o.c.next_attempt_at))
                                  .where(o.c.status == "pending").group_by(o.c.county)).all()
        return cases, outbox, oldest

    def collect(self):
        up = GaugeMetricFamily("minqing_exporter_database_up", "1 when the exporter could read the database")
        with self.lock:
            try:
                head, _ = self.ledger.head()
                self._tally()
                cases, outbox, oldest = self._tables()
            except Exception as exc:      # the database away: say so, and keep serving the rest
                # (also before the services first created their tables)
                log.warning("exporter: database not readable: %s", type(exc).__name__)
                up.add_metric([], 0)
                yield up
                return
        up.add_metric([], 1)
        yield up
        g = GaugeMetricFamily("minqing_ledger_head_position", "Position of the last event recorded in the ledger")
        g.add_metric([], head)
        yield g
        reported = CounterMetricFamily("minqing_cases_reported", "Cases reported (case.reported in the ledger)",
                                       labels=["county", "channel"])
        for (county, channel), n in sorted(self.reported.items()):
            reported.add_metric([county, channel], n)
        yield reported
        followups = CounterMetricFamily("minqing_followups", "回访 recorded (case.followed_up), by rating",
                                        labels=["county", "rating"])
        for (county, rating), n in sorted(self.followups.items()):
            followups.add_metric([county, rating], n)
        yield followups
        open_ = GaugeMetricFamily("minqing_cases_open", "Open cases now (routing)", labels=["county", "township"])
        overdue = GaugeMetricFamily("minqing_cases_overdue", "Open cases past their time limit now (routing)",
                                    labels=["county", "township"])
        for county, township, n, late in cases:
            open_.add_metric([county, township or "unknown"], n)
            overdue.add_metric([county, township or "unknown"], late or 0)
        yield open_
        yield overdue
        box = GaugeMetricFamily("minqing_notify_outbox", "Notifications in notify's outbox, by status",
                                labels=["county", "status"])
        for county, status, n in outbox:
            box.add_metric([county, status], n)
        yield box
        age = GaugeMetricFamily("minqing_notify_oldest_pending_seconds",
                                "How long the oldest pending notification has been due", labels=["county"])
        from minqing.clock import parse_instant
        now = self.now()
        for county, due in oldest:
            if due:
                age.add_metric([county], max(0.0, (now - parse_instant(due)).total_seconds()))
        yield age


def main(argv=None) -> int:
    from minqing import config as config_mod
    from minqing.db import make_engine
    from minqing.ledger import Ledger
    from minqing.logs import setup_logging
    from prometheus_client import start_http_server

    settings = config_mod.load()
    parser = argparse.ArgumentParser(prog="python -m minqing.exporter", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=settings.exporter_port)
    parser.add_argument("--host", default=settings.listen_address)
    args = parser.parse_args(argv)
    setup_logging(settings.log_level, "exporter")
    ledger = Ledger(make_engine(settings.database_url))
    REGISTRY.register(OperationsCollector(ledger))
    start_http_server(args.port, addr=args.host)
    log.info("exporter serving /metrics on %s:%d", args.host, args.port)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
