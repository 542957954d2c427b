"""The machine's own limits, measured in the same run as the ledger figures (bench.run): pgbench
inserting 1 row and 100 rows per transaction with 1 and 4 clients, and COPY, into a table shaped like
ledger_events, on the same private durable PostgreSQL; and the broker's persistent publishes with
publisher confirms, one at a time and windowed (as the relay publishes), on a private RabbitMQ node.
Nothing here is Minqing code (the broker figure uses the relay's Confirms helper to wait): these are
the ceilings a durable append and the relay can approach."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

TABLE = ("CREATE TABLE limits (position bigserial PRIMARY KEY, event_id text UNIQUE, stream text, version int, "
         "data text, UNIQUE (stream, version))")
ROW = "(gen_random_uuid()::text, gen_random_uuid()::text, 1, '{\"note\":\"已联系村民，正在协调\"}')"


def pgbench_binary() -> str | None:
    return shutil.which("pgbench") or next((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin/pgbench")), None)


def _pgbench(binary: str, pg, script: str, clients: int, seconds: float) -> float | None:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run([binary, "-n", "-M", "prepared", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                              "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(int(seconds)), "-f", f.name,
                              "limits"], capture_output=True, text=True, timeout=seconds + 60)
        found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
        return float(found.group(1)) if found else None
    finally:
        Path(f.name).unlink()


def copy_rows_per_s(pg, rows: int = 200_000) -> float:
    with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="limits") as conn:
        payload = '{"note":"已联系村民，正在协调"}'
        t = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY limits (event_id, stream, version, data) FROM STDIN") as copy:
            for i in range(rows):
                copy.write_row((f"copy-{i}", f"copy-stream-{i // 10}", i % 10 + 1, payload))
        conn.commit()
        return rows / (time.perf_counter() - t)


def run(pg, seconds: float = 5.0) -> dict:
    pg.create_database("limits", drop_existing=True)
    with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="limits", autocommit=True) as conn:
        conn.execute(TABLE)
    out: dict = {"table": TABLE, "copy_rows_per_s": round(copy_rows_per_s(pg))}
    binary = pgbench_binary()
    if binary is None:
        out["pgbench"] = "not installed (postgresql-contrib / postgresql-15 ships it)"
        return out
    one = f"INSERT INTO limits (event_id, stream, version, data) VALUES {ROW};\n"
    hundred = ("INSERT INTO limits (event_id, stream, version, data) SELECT gen_random_uuid()::text, "
               "gen_random_uuid()::text, 1, '{\"note\":\"已联系村民，正在协调\"}' FROM generate_series(1, 100);\n")
    for name, script, rows in (("insert_1_row", one, 1), ("insert_100_rows", hundred, 100)):
        for clients in (1, 4):
            tps = _pgbench(binary, pg, script, clients, seconds)
            out[f"pgbench_{name}_{clients}c_rows_per_s"] = round(tps * rows) if tps else None
    print("   limits: " + ", ".join(f"{k} {v:,}" for k, v in out.items() if isinstance(v, (int, float))), flush=True)
    return out


BROKER_WINDOW = 200          # the relay's batch (minqing.relay.Relay.batch)
BROKER_BODY = b'{"specversion":"1.0","type":"cn.minqing.case.progress_noted","data":{"note":"' + \
    "已联系村民，正在协调".encode() * 20 + b'"}}'    # about a CloudEvent's size (~700 bytes)


def broker_confirms(uri: str, seconds: float = 5.0) -> dict:
    """Persistent messages per second into a durable queue, waiting for the broker's confirm after
    each message, and after each window of BROKER_WINDOW messages."""
    import kombu

    from minqing.relay import Confirms
    out: dict = {"message_bytes": len(BROKER_BODY), "window": BROKER_WINDOW}
    exchange = kombu.Exchange("bench.limits", type="direct", durable=True)
    with kombu.Connection(uri, connect_timeout=10) as connection:
        channel = connection.channel()
        queue = kombu.Queue("bench.limits", exchange=exchange, routing_key="limits", durable=True)(channel)
        queue.declare()
        producer = kombu.Producer(channel)
        confirms = Confirms(channel)
        for name, window in (("broker_confirm_each_msgs_per_s", 1), ("broker_confirm_windowed_msgs_per_s", BROKER_WINDOW)):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                for _ in range(window):
                    producer.publish(BROKER_BODY, exchange=exchange, routing_key="limits", delivery_mode=2,
                                     content_type="application/json", content_encoding="utf-8", retry=False)
                    confirms.published_one()
                confirms.wait(connection)
                n += window
            out[name] = round(n / (time.perf_counter() - t0))
            queue.purge()
        queue.delete()
    print(f"   broker: one at a time {out['broker_confirm_each_msgs_per_s']:,}/s, "
          f"windowed {out['broker_confirm_windowed_msgs_per_s']:,}/s", flush=True)
    return out


def broker_run(tmp, seconds: float = 5.0) -> dict:
    """broker_confirms on a private RabbitMQ node started for it under `tmp`."""
    from minqing.shell.devstack import RabbitMQ
    mq = RabbitMQ(tmp / "mq-limits").start()
    try:
        return broker_confirms(mq.uri, seconds)
    finally:
        mq.stop()
