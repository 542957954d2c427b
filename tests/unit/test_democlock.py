"""The demo clock (issue #17.1): configured in place, recorded in the ledger, forward only, refused
outside a demo deployment. Unit tests on a SQLite ledger and fake real time."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from minqing import clock as clock_mod
from minqing import democlock
from minqing.db import make_engine
from minqing.ledger import Ledger
from minqing.service_kit import create_tables

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def sqlite_ledger(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_tables(engine)
    yield Ledger(engine)
    engine.dispose()


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setenv("MINQING_CLOCK", "demo")
    monkeypatch.delenv("MINQING_CLOCK_START", raising=False)
    monkeypatch.delenv("MINQING_CLOCK_RATE", raising=False)


def test_system_clock_is_real_time_unless_the_demo_clock_is_on(monkeypatch):
    monkeypatch.delenv("MINQING_CLOCK", raising=False)
    fresh = clock_mod.Clock(clock_mod._from_environment)
    assert fresh.source is None
    assert abs((fresh.now() - clock_mod.real_now()).total_seconds()) < 5


def test_moving_the_clock_is_refused_outside_a_demo_deployment(sqlite_ledger, monkeypatch):
    monkeypatch.delenv("MINQING_CLOCK", raising=False)
    with pytest.raises(democlock.DemoClockError, match="demo or training deployment"):
        democlock.advance(sqlite_ledger, timedelta(days=3))
    with pytest.raises(democlock.DemoClockError):
        democlock.set_clock(sqlite_ledger, T0)
    assert sqlite_ledger.read_stream(democlock.STREAM) == []


def test_advance_is_recorded_and_moves_demo_time_forward(sqlite_ledger, demo):
    democlock.set_clock(sqlite_ledger, T0, rate=0)
    event = democlock.advance(sqlite_ledger, democlock.parse_duration("3d"))
    assert event.type == "clock.advanced" and event.stream == "system-clock"
    assert event.data["previous"] == "2026-11-02T00:00:00.000000Z"
    assert event.data["demo_at"] == "2026-11-05T00:00:00.000000Z"
    assert event.data["by_seconds"] == 3 * 86400
    now, anchor = democlock.current(sqlite_ledger)
    assert now == T0 + timedelta(days=3) and anchor.rate == 0


def test_the_clock_never_goes_back(sqlite_ledger, demo):
    democlock.set_clock(sqlite_ledger, T0, rate=0)
    with pytest.raises(democlock.DemoClockError, match="only moves forward"):
        democlock.set_clock(sqlite_ledger, T0 - timedelta(hours=1))
    with pytest.raises(democlock.DemoClockError):
        democlock.parse_duration("-3d")
    with pytest.raises(democlock.DemoClockError):
        democlock.parse_duration("0h")


def test_a_faster_rate_runs_demo_time_faster():
    anchor = democlock.Anchor(T0, datetime(2030, 1, 1, tzinfo=timezone.utc), 60.0)
    assert anchor.at(datetime(2030, 1, 1, 0, 1, tzinfo=timezone.utc)) == T0 + timedelta(hours=1)


def test_every_reader_follows_the_latest_anchor_within_its_refresh():
    real = [datetime(2030, 1, 1, tzinfo=timezone.utc)]
    ticks = [0.0]
    anchors = [democlock.Anchor(T0, real[0], 1.0)]
    source = democlock.DemoClock(lambda: anchors[-1], anchors[0], refresh=1.0,
                                 real=lambda: real[0], monotonic=lambda: ticks[0])
    assert source.now() == T0
    anchors.append(democlock.Anchor(T0 + timedelta(days=3), real[0], 1.0))    # an admin advances 3 days
    ticks[0] = 0.5
    assert source.now() == T0                      # cached …
    ticks[0] = 1.1
    assert source.now() == T0 + timedelta(days=3)  # … and followed after the refresh


def test_a_reader_never_sees_time_go_backwards():
    real = datetime(2030, 1, 1, tzinfo=timezone.utc)
    anchors = [democlock.Anchor(T0 + timedelta(days=1), real, 0.0)]
    source = democlock.DemoClock(lambda: anchors[-1], anchors[0], refresh=0.0, real=lambda: real)
    assert source.now() == T0 + timedelta(days=1)
    anchors.append(democlock.Anchor(T0, real, 0.0))
    assert source.now() == T0 + timedelta(days=1)


def test_a_database_outage_keeps_the_last_anchor():
    real = datetime(2030, 1, 1, tzinfo=timezone.utc)
    calls = [0]

    def read():
        calls[0] += 1
        if calls[0] > 1:
            raise ConnectionError("database away")
        return democlock.Anchor(T0, real, 0.0)
    source = democlock.DemoClock(read, democlock.Anchor(real, real, 1.0), refresh=0.0, real=lambda: real)
    assert source.now() == T0
    assert source.now() == T0


def test_run_anchors_the_clock_once_and_a_restart_keeps_it(sqlite_ledger, demo, monkeypatch):
    monkeypatch.setenv("MINQING_CLOCK_START", "2026-11-02T08:00+08:00")
    monkeypatch.setenv("MINQING_CLOCK_RATE", "0")
    said = democlock.start(sqlite_ledger)
    assert "2026-11-02T00:00:00" in said
    assert said.startswith("demo clock: 2026-11-02 08:00:00 CST Asia/Shanghai")    # as people read it (#18.1)
    democlock.advance(sqlite_ledger, timedelta(days=1))
    democlock.start(sqlite_ledger)                  # a restart with the same settings: no step back
    assert [e.type for e in sqlite_ledger.read_stream(democlock.STREAM)] == ["clock.set", "clock.advanced"]
    assert democlock.current(sqlite_ledger)[0] == T0 + timedelta(days=1)


def test_the_ledger_records_events_at_demo_time(sqlite_ledger, demo):
    democlock.set_clock(sqlite_ledger, T0, rate=0)
    clock = clock_mod.Clock(lambda: democlock.DemoClock(lambda: democlock.read_anchor(sqlite_ledger.engine)[0],
                                                        democlock.Anchor(T0, T0, 0.0), refresh=0.0))
    follower = Ledger(sqlite_ledger.engine, clock)
    event = democlock.advance(follower, timedelta(hours=5))
    assert event.recorded_at == "2026-11-02T00:00:00.000000Z"        # recorded when it happened
    assert clock.now() == T0 + timedelta(hours=5)


def test_clock_advance_exits_non_zero_outside_a_demo_deployment(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MINQING_RUN_DIR": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "minqing.shell.cli", "clock", "advance", "3d"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "demo or training deployment" in done.stderr


def test_the_kernel_never_imports_the_simulator():
    code = ("import sys, pkgutil, importlib, minqing\n"
            "for m in pkgutil.iter_modules(minqing.__path__):\n"
            "    if m.name not in ('cli', 'simulate', 'service_main'):\n"
            "        importlib.import_module('minqing.' + m.name)\n"
            "print(any(n.startswith('minqing.shell.simulate') for n in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
