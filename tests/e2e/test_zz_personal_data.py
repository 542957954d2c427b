"""Principle 8 over the whole end-to-end session (issue #4, "Done when"): runs last, and searches the
ledger, every message the broker carried and every log line of the stack for every raw phone number
and name the session's tests used. Nothing may be found."""
from __future__ import annotations

import json

from sqlalchemy import create_engine, text

from tests.support import USED_NAMES, USED_PHONES


def _published_by_the_stack(tap) -> list[str]:
    """The bodies of the CloudEvents the relay published. A test also injects malformed messages on
    purpose (the dead-letter tests, one carrying a phone number); those are the test's, not the stack's."""
    bodies, queue = [], tap.queue(tap.channel)
    while (message := queue.get(no_ack=True, accept=["cloudevents", "json"])) is not None:
        raw = message.body if isinstance(message.body, str) else message.body.decode("utf-8", "replace")
        try:
            if json.loads(raw).get("specversion") == "1.0":
                bodies.append(raw)
        except (ValueError, AttributeError):
            continue
    return bodies


def test_no_raw_phone_number_or_name_anywhere_after_the_whole_session(stack, stack_db, broker_tap):
    assert len(USED_PHONES) >= 20, "the session should have used many residents' numbers"
    engine = create_engine(stack_db)
    with engine.connect() as conn:
        ledger = "\n".join(f"{r.data} {r.metadata}" for r in conn.execute(text("SELECT data, metadata FROM ledger_events")))
    engine.dispose()
    messages = _published_by_the_stack(broker_tap)
    carried = "\n".join(messages)
    logs = stack.logs() + (stack.run_dir / "run.out").read_text(errors="replace")
    assert len(messages) > 100 and ledger and logs
    for where, text_ in (("ledger", ledger), ("broker", carried), ("logs", logs)):
        found = [p for p in USED_PHONES if p in text_] + [n for n in USED_NAMES if n in text_]
        assert found == [], f"raw personal data in the {where}: {found}"
