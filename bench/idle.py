"""What the relay costs when nothing happens: CPU seconds per second of the relay (a thread alone in
this process) and PostgreSQL transactions per second, over an idle window, for the relay as built
(LISTEN/NOTIFY, 1 s fallback poll) and, in the same run, for the same relay polling every 20 ms as
it did before. Needs a RabbitMQ node: one is started privately (minqing.shell.devstack)."""
from __future__ import annotations

import threading
import time

from sqlalchemy import text

from minqing.db import make_engine
from minqing.ledger import Ledger, create_schema
from minqing.relay import Relay
from minqing.service_kit import create_tables

WINDOW = 10.0


def _commits(engine) -> int:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        n = conn.execute(text("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                              "WHERE datname = current_database()")).scalar()
        conn.rollback()
    return n


def measure(ledger: Ledger, uri: str, idle_sleep: float) -> dict:
    stop = threading.Event()
    thread = threading.Thread(target=Relay(ledger, uri, idle_sleep=idle_sleep).run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(3.0)                                       # connected, caught up
    c0, t0, w0 = _commits(ledger.engine), time.process_time(), time.perf_counter()
    time.sleep(WINDOW)
    cpu, wall, c1 = time.process_time() - t0, time.perf_counter() - w0, _commits(ledger.engine)
    stop.set()
    thread.join(10)
    return {"idle_sleep_s": idle_sleep, "cpu_ms_per_s": round(cpu / wall * 1000, 2),
            "percent_of_one_core": round(cpu / wall * 100, 2),
            "transactions_per_s": round((c1 - c0 - 2) / wall, 1)}   # minus the two stat reads


def run(pg, tmp) -> dict:
    from minqing.shell.devstack import RabbitMQ
    mq = RabbitMQ(tmp / "mq").start()
    try:
        engine = make_engine(pg.create_database("idle", drop_existing=True))
        create_tables(engine)
        create_schema(engine)
        ledger = Ledger(engine)
        out = {"window_s": WINDOW, "measured": "relay thread alone in the bench process: process CPU time / wall time; "
               "transactions from pg_stat_database of its database",
               "relay_notify": measure(ledger, mq.uri, 1.0), "relay_polling_20ms_as_before": measure(ledger, mq.uri, 0.02)}
        out["ratio_cpu_notify_over_polling"] = round(
            out["relay_notify"]["cpu_ms_per_s"] / max(out["relay_polling_20ms_as_before"]["cpu_ms_per_s"], 1e-9), 3)
        print(f"   idle relay: {out['relay_notify']['cpu_ms_per_s']} ms CPU/s, "
              f"{out['relay_notify']['transactions_per_s']} tx/s (polling every 20 ms: "
              f"{out['relay_polling_20ms_as_before']['cpu_ms_per_s']} ms CPU/s, "
              f"{out['relay_polling_20ms_as_before']['transactions_per_s']} tx/s)", flush=True)
        engine.dispose()
        return out
    finally:
        mq.stop()
