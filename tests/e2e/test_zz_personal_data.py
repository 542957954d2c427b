"""Principle 8 over the whole end-to-end session (issue #4, "Done when"): runs last, and searches the
ledger, every message the broker carried and every log line of the stack for every raw phone number
and name the session's tests used. Nothing may be found."""
from __future__ import annotations

from sqlalchemy import create_engine, text

from tests.support import USED_NAMES, USED_PHONES


def test_no_raw_phone_number_or_name_anywhere_after_the_whole_session(stack, stack_db, broker_tap):
    assert len(USED_PHONES) >= 20, "the session should have used many residents' numbers"
    engine = create_engine(stack_db)
    with engine.connect() as conn:
        ledger = "\n".join(f"{r.data} {r.metadata}" for r in conn.execute(text("SELECT data, metadata FROM ledger_events")))
    engine.dispose()
    messages = []
    while batch := broker_tap.collect(5000, timeout=2.0):
        messages.extend(body for _, body, _ in batch)
    carried = "\n".join(str(m) for m in messages)
    logs = stack.logs() + (stack.run_dir / "run.out").read_text(errors="replace")
    assert len(messages) > 100 and ledger and logs
    for where, text_ in (("ledger", ledger), ("broker", carried), ("logs", logs)):
        found = [p for p in USED_PHONES if p in text_] + [n for n in USED_NAMES if n in text_]
        assert found == [], f"raw personal data in the {where}: {found}"
