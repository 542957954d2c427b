"""Issue #12.2 and its done-when, on the embedded default (SQLite): reports posted at the rate limit
by several report desks at once, while intake's follower is woken many times a second, never wait
for SQLite's write lock (before the fix, about 1 in 100 waited the 30 s busy timeout and answered
503 — and was registered anyway). The full 1,000 reports (and PostgreSQL) are `bench/intake_load.py`."""
from bench.intake_load import WakeFlood, post_at_rate_limit


def test_reports_at_the_rate_limit_never_stall_on_sqlite(sqlite_stack):
    tokens = [sqlite_stack.issue("operator") for _ in range(4)]
    flood = WakeFlood(sqlite_stack.env["MINQING_AMQP_URI"], per_second=20)
    try:
        figures = post_at_rate_limit(sqlite_stack.base, tokens, per_token=50, timeout=10)
    finally:
        flood.close()
    print(figures)
    # Before the fix: 75 client timeouts (10 s), 124 × 500 and a 503 out of these 200. The done-when's
    # "none slower than 2 s" depends on the machine's load (a shared 2-core machine queues the desks'
    # bursts): bench/intake_load.py measures it; here no report may come near the lock's wait.
    assert figures["statuses"] == {"201": 200}, figures
