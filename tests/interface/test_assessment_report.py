"""The assessment report (issue #7 §6, done-when): written from real figures, its CSV files hold the
same numbers, it opens in a real browser (headless Chromium) and both charts render; publishing
appends `assessment.published` with the digest an auditor can recompute."""
from __future__ import annotations

import csv
import re
import shutil
import subprocess

import pytest

from minqing import county  # noqa: F401
from minqing.ledger import canonical_json  # noqa: F401
from services.assessment import report
from tests.interface.test_assessment_rules import TOWNSHIP, World


@pytest.fixture
def figures_world(pg_url):
    from minqing.db import make_engine
    engine = make_engine(pg_url)
    world = World(engine)
    for i in range(8):
        case_id = world.case(unit=TOWNSHIP if i % 2 else "heigang.kaoshan-station",
                             cadre="lj-c006" if i % 2 else "lj-c002")
        world.at(3 + i)
        world.resolve(case_id, TOWNSHIP if i % 2 else "heigang.kaoshan-station", "lj-c006" if i % 2 else "lj-c002")
        world.rate(case_id, "unsatisfied" if i < 3 else "satisfied")
    world.follower.catch_up()
    yield world
    engine.dispose()


def test_report_files_browser_rendering_and_publication(figures_world, tmp_path):
    world = figures_world
    with world.ledger.engine.connect() as conn:
        data, digest, files = report.write(conn, "longjiang", "2026-03", tmp_path / "r")
    names = {f.name for f in files}
    assert {"index.html", "trend.png", "townships.png", "cadres.csv", "units.csv", "townships.csv",
            "rankings.csv", "flagged.csv", "trend.csv"} <= names
    with (tmp_path / "r" / "cadres.csv").open(encoding="utf-8-sig") as handle:
        rows = {r["code"]: r for r in csv.DictReader(handle)}
    assert rows["lj-c002"]["received"] == "4" and rows["lj-c002"]["resolved"] == "4"
    with (tmp_path / "r" / "flagged.csv").open(encoding="utf-8-sig") as handle:
        flagged = list(csv.DictReader(handle))
    assert all(f["seed"] in ("000", "001", "004") for f in flagged)
    idle = {f["cadre"] for f in flagged if f["flag"] == "no_recorded_work"}      # the roster appears whole
    assert "lj-c004" in idle and "lj-c002" not in idle
    assert rows["lj-c004"]["name"] == "驻村干部丁" and rows["lj-c004"]["received"] == "0"
    assert report.digest(data) == digest

    chromium = shutil.which("chromium")
    assert chromium, "make test installs Debian's chromium (deploy/local/install-debian-deps.sh --with-browser)"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
                          "--virtual-time-budget=5000", "--dump-dom", (tmp_path / "r" / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dict(re.findall(r'<img id="(\w+)"[^>]*data-rendered="([^"]+)"', dom.stdout))
    assert rendered == {"trend": "800x400", "townships": "800x400"}, dom.stdout[:3000]
    assert "龙江县" in dom.stdout and "lj-c002" in dom.stdout

    event = report.publish(world.ledger, "longjiang", "2026-03", data["rules_version"], digest, "test")
    assert event.type == "assessment.published" and event.data["digest"] == digest
    again = report.publish(world.ledger, "longjiang", "2026-03", data["rules_version"], digest, "test")
    assert again.position == event.position              # the same figures publish once


def test_report_and_rules_through_the_cli(figures_world, pg_url, tmp_path):
    """`minqing report` writes the files and publishes; bad input is named with a non-zero exit."""
    import os
    import sys
    env = {**os.environ, "MINQING_DATABASE_URL": pg_url, "MINQING_RUN_DIR": str(tmp_path / "run")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "minqing.shell.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)
    out = cli("report", "--county", "longjiang", "--period", "2026-03", "--out", str(tmp_path / "cli"), "--publish")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "cli" / "index.html").exists() and "assessment.published at ledger position" in out.stdout
    bad = cli("report", "--county", "longjiang", "--period", "March")
    assert bad.returncode == 1 and "--period" in bad.stderr and "Traceback" not in bad.stderr
    rules = tmp_path / "rules.yaml"
    rules.write_text("county: longjiang\nthresholds: {promotion_veto: 0.95}\n", encoding="utf-8")
    refused = cli("assessment", "rules", "check", str(rules))
    assert refused.returncode == 1 and "thresholds" in refused.stderr
    loaded = cli("assessment", "rules", "load", "deploy/assessment/longjiang.yaml")
    assert loaded.returncode == 0 and "version 1 published" in loaded.stdout, loaded.stderr
