"""A service process under eventlet must not freeze while PostgreSQL makes it wait (a lock, a slow
query): other greenthreads — HTTP, AMQP heartbeats, other workers — keep running."""
import subprocess
import sys
import textwrap


def test_a_slow_query_does_not_block_other_greenthreads(pg_url):
    script = textwrap.dedent(f"""
        import minqing.shell.service_main  # applies the same setup as a real service process
        import eventlet, time
        from sqlalchemy import text
        from minqing.db import make_engine
        engine = make_engine({pg_url!r})
        gaps, last = [], [time.monotonic()]
        def ticker():
            for _ in range(40):
                eventlet.sleep(0.025)
                now = time.monotonic(); gaps.append(now - last[0]); last[0] = now
        t = eventlet.spawn(ticker)
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(0.6)"))
        t.wait()
        print(max(gaps))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 0.3
