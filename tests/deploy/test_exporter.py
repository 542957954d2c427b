"""The operations exporter (`python -m minqing.shell.exporter`) as a real process on a real database:
what it serves on /metrics matches the ledger and the tables it reads, and a restarted exporter
reports the same counter totals (they come from the ledger, so they never reset)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from minqing.casefile import stream_of
from minqing.shell.devstack import free_port
from minqing.ledger import Metadata, NewEvent
from minqing.service_kit import create_tables
from services.notify.tables import metadata_obj as notify_tables, outbox_table
from services.routing.tables import cases_table
from tests.interface.routing_world import RoutingWorld

START = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)


def _scrape(url: str, tmp_path) -> dict:
    port = free_port()
    env = {**os.environ, "MINQING_DATABASE_URL": url, "MINQING_RUN_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "minqing.shell.exporter", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
                    text = resp.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "exporter did not serve /metrics"
                time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _world(url):
    world = RoutingWorld(url, START)
    places = [("heigang", "heigang.kaoshan", None), ("shanquan", "shanquan.pingan", None)]
    cases = [world.report("longjiang", "101", *places[i % 2], at=START + timedelta(hours=i)) for i in range(6)]
    world.at(START + timedelta(days=12))                    # lapsed deadlines: overdue marks, escalations
    for case_id, rating in zip(cases[:3], ["satisfied", "satisfied", "unsatisfied"]):
        world.ledger.append(stream_of(case_id), [NewEvent("case.followed_up", {
            "case_id": case_id, "rating": rating, "via": "sms"}, Metadata("service:notify", "longjiang"))])
    create_tables(world.engine, notify_tables)
    with world.engine.begin() as conn:
        # the sample policies escalate an overdue case at once (a fresh deadline, no longer overdue), so
        # two cases are set overdue by hand: the exporter's reading of the table is what is tested here
        conn.execute(cases_table.update().where(cases_table.c.case_id.in_(cases[:2])).values(overdue=True))
        for status, due in [("pending", "2026-03-14T00:00:00Z"), ("pending", "2026-03-14T01:00:00Z"),
                            ("failed", "2026-03-13T00:00:00Z"), ("sent", "2026-03-13T00:00:00Z")]:
            conn.execute(outbox_table.insert().values(
                key=str(uuid.uuid4()), case_id=cases[0], county="longjiang", channel="sms", template="receipt",
                recipient_role="resident", recipient_ref="r-1", recipient_masked="138****0000", body="…",
                caused_by=str(uuid.uuid4()), status=status, attempts=1, next_attempt_at=due))
    return world


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_exporter_reports_what_the_records_say(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    world = _world(url)
    try:
        head, _ = world.ledger.head()
        with world.engine.connect() as conn:
            open_rows = conn.execute(select(cases_table.c.township, cases_table.c.overdue)
                                     .where(cases_table.c.is_open.is_(True))).all()
    finally:
        world.close()
    m = _scrape(url, tmp_path)
    county = ("county", "longjiang")
    assert m[("minqing_exporter_database_up", ())] == 1
    assert m[("minqing_ledger_head_position", ())] == head
    assert m[("minqing_cases_reported_total", (("channel", "hotline"), county))] == 6
    assert m[("minqing_followups_total", (county, ("rating", "satisfied")))] == 2
    assert m[("minqing_followups_total", (county, ("rating", "unsatisfied")))] == 1
    for township in ("heigang", "shanquan"):
        labels = (county, ("township", township))
        assert m[("minqing_cases_open", labels)] == sum(1 for t, _ in open_rows if t == township)
        assert m[("minqing_cases_overdue", labels)] == sum(1 for t, late in open_rows if t == township and late)
    assert sum(v for (name, _), v in m.items() if name == "minqing_cases_overdue") > 0
    assert m[("minqing_notify_outbox", (county, ("status", "pending")))] == 2
    assert m[("minqing_notify_outbox", (county, ("status", "failed")))] == 1
    assert m[("minqing_notify_oldest_pending_seconds", (county,))] > 200 * 86400    # due in March 2026
    assert not any("138" in str(labels) or "r-1" in str(labels) for _, labels in m)    # no person in a label

    again = _scrape(url, tmp_path)                                     # a restart: the same totals
    assert {k: v for k, v in again.items() if k[0].startswith("minqing_") and k[0].endswith("_total")} == \
           {k: v for k, v in m.items() if k[0].startswith("minqing_") and k[0].endswith("_total")}


def test_exporter_says_when_the_database_is_unreadable(tmp_path):
    m = _scrape(f"sqlite:///{tmp_path / 'missing' / 'none.db'}", tmp_path)
    assert m[("minqing_exporter_database_up", ())] == 0
