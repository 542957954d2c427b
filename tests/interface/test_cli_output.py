"""What long commands print (issue #18.8b): `minqing report` does not pass on matplotlib's INFO lines,
and report, rebuild and verify show their progress on stderr (plain lines when it is not a
terminal), leaving stdout to their results."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.interface.test_assessment_report import figures_world  # noqa: F401  (the shared fixture)


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "minqing.shell.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def test_report_rebuild_and_verify_show_progress_and_no_chart_library_chatter(figures_world, pg_url, tmp_path):  # noqa: F811
    env = {**os.environ, "MINQING_DATABASE_URL": pg_url, "MINQING_RUN_DIR": str(tmp_path / "run"),
           "MINQING_LOG_LEVEL": "INFO", "MPLCONFIGDIR": str(tmp_path / "mpl")}    # a fresh font cache: matplotlib talks
    out = _cli(env, "report", "--county", "longjiang", "--period", "2026-03", "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    assert "matplotlib" not in out.stderr and "fontTools" not in out.stderr, out.stderr
    assert "report: computing the figures" in out.stderr and "report: written in" in out.stderr
    assert "\r" not in out.stderr                                   # not a terminal: plain lines
    assert out.stdout.startswith("report of longjiang for 2026-03")

    verified = _cli(env, "audit", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("OK:")
    assert "verify: " in verified.stderr and "events checked" in verified.stderr

    rebuilt = _cli(env, "consumer", "rebuild", "assessment.facts")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuild assessment.facts: replayed up to position" in rebuilt.stderr
    assert rebuilt.stdout.startswith("assessment.facts rebuilt from the ledger")
