"""`minqing simulate` on the real stack (issue #17.2/3): a short span of 龙江县 produces warnings,
lapses, automatic escalations, chases, reopenings and field visits; and the same seed on a fresh
database gives the same requests and the same figures, though the two runs go side by side."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.demo_stacks import start_demo_stack

pytestmark = [pytest.mark.postgres, pytest.mark.rabbit]
STARTING = threading.Lock()
ARGS = ["--county", "longjiang", "--start", "2026-11-02", "--days", "9", "--per-day", "8", "--seed", "17"]


def simulate_on_a_fresh_stack(tmp_path_factory, postgres, rabbit, name: str) -> tuple[dict, float, str]:
    with STARTING:       # one stack starts at a time (its database, vhost and ports); the runs overlap
        stack = start_demo_stack(tmp_path_factory, postgres, rabbit, name=name, start="2026-11-01T20:00+08:00")
    out = stack.run_dir / "figures.json"
    try:
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "minqing.shell.cli", "simulate", *ARGS, "--json", str(out)],
                              env=stack.env, capture_output=True, text=True, timeout=600)
        took = time.monotonic() - began
        assert done.returncode == 0, done.stderr[-3000:] + stack.logs()[-3000:]
        assert "sessions" in done.stderr                  # the progress bar
        return json.loads(out.read_text()), took, done.stdout
    finally:
        stack.stop()


def test_a_short_span_of_longjiang_is_eventful_and_reproducible(tmp_path_factory, postgres, rabbit):
    # Two stacks at once, each on a fresh database: the runs overlap (the test takes half the time)
    # and each sees different timing from the other, which the same seed must not notice.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(simulate_on_a_fresh_stack, tmp_path_factory, postgres, rabbit, name)
                for name in ("sim_a", "sim_b")]
        (first, took, shown), (second, took_b, _) = [run.result() for run in runs]
    figures = first["figures"]
    print(shown, f"\n{took:.0f} s and {took_b:.0f} s, side by side")
    assert figures["reports"] >= 50 and len(figures["reports_by_channel"]) >= 6
    assert figures["assigned"] == figures["reports"]
    assert figures["deadline_warned"] > 0 and figures["overdue"] > 0
    assert any(not k.endswith("(by hand)") for k in figures["escalated"]), figures["escalated"]
    assert any(k.startswith("chase") for k in figures["pressure"]), figures["pressure"]
    assert figures["reopened"] > 0 and figures["resolved"] > 0 and figures["visits"] > 0
    assert 0 < figures["satisfaction"] < 1
    assert "figures digest" in shown and "satisfaction" in shown

    assert second["requests_digest"] == first["requests_digest"]
    assert second["figures"] == first["figures"]
    assert second["digest"] == first["digest"]
