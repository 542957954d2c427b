"""Broker messages (minqing.cloudevents, minqing.service_kit): a poison message is dead-lettered,
never acked away, and a stuck follower never keeps a message handler (or the service's stop) waiting."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import OperationalError

from minqing import cloudevents
from minqing.db import make_engine
from minqing.ledger import Ledger
from minqing.service_kit import DeadLetters, Following, LedgerProvider, _EventConsumer, create_tables


def _event(**changes):
    body = {"specversion": "1.0", "id": "e1", "source": "/minqing/counties/longjiang",
            "type": "cn.minqing.case.progress_noted", "subject": "c1", "time": "2026-01-05T01:00:00.000000Z",
            "datacontenttype": "application/json", "data": {"case_id": "c1"},
            "sequence": "00000000000000000007", "county": "longjiang"}
    body.update(changes)
    return body


POISON = [_event(sequence="²"), _event(sequence="0000000000000000000²"), _event(sequence="٣"),
          _event(sequence=7), _event(sequence="9" * 5000), _event(sequence=""), _event(data=[1, 2]),
          _event(data="text"), _event(type=None), "[" * 100_000, b"\xff\xfe"]


def test_a_good_event_parses():
    assert cloudevents.parse(_event()) == (7, "case.progress_noted")


@pytest.mark.parametrize("body", POISON, ids=range(len(POISON)))
def test_poison_bodies_raise_only_malformed_message(body):
    with pytest.raises(cloudevents.MalformedMessage):
        cloudevents.parse(body)


class FakeMessage:
    def __init__(self):
        self.channel = SimpleNamespace(connection=True)
        self.acked = self.rejected = False

    def ack(self):
        self.acked = True

    def reject(self, requeue):
        assert requeue is False
        self.rejected = True


def test_a_handler_that_raises_has_its_message_rejected_to_the_dead_letter_exchange_not_acked():
    entrypoint = _EventConsumer(queue=None)
    failed, fine = FakeMessage(), FakeMessage()
    try:
        raise RuntimeError("the dead-letter copy failed too")
    except RuntimeError:
        import sys
        entrypoint.handle_message_processed(failed, exc_info=sys.exc_info())
    entrypoint.handle_message_processed(fine)
    assert failed.rejected and not failed.acked
    assert fine.acked and not fine.rejected


class Stuck:
    """A projection whose database is always away: its follower retries in place forever."""
    name = "test.stuck"
    event_types = frozenset({"case.progress_noted"})

    def __init__(self, ledger, config):
        self.calls = 0

    def apply(self, conn, event):
        self.calls += 1
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


class RecordingDeadLetters(DeadLetters):
    def __init__(self):
        self.sent = []

    def send(self, body, reason, consumer_name):
        self.sent.append((body, reason))


@pytest.fixture
def following(tmp_path):
    """A Following on a fake container (threads for nameko's managed threads)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    create_tables(make_engine(url))       # the provider requires a migrated database
    provider = LedgerProvider()
    container = SimpleNamespace(config={"DATABASE_URL": url}, dependencies=[provider], threads=[])

    def spawn(fn, identifier=None):
        thread = threading.Thread(target=fn, daemon=True)
        container.threads.append(thread)
        thread.start()
    container.spawn_managed_thread = spawn
    provider.container = container
    following = Following(Stuck, poll_interval=30)
    following.container = container
    following.setup()
    following.follower.backoff = 2.0
    yield following
    following.stop()
    provider.stop()


def test_a_message_only_wakes_the_follower_and_stop_ends_it_at_once(following):
    from tests.conftest import note
    following.start()
    following.ledger.append("case-c1", [note("c1")])
    started = time.monotonic()
    following.on_message(_event(sequence="00000000000000000001"), RecordingDeadLetters())
    assert time.monotonic() - started < 0.5, "the handler must not drain the ledger itself"
    deadline = time.monotonic() + 5
    while following.projection.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert following.projection.calls > 0            # the follower's own thread picked it up
    started = time.monotonic()
    following.stop()
    for thread in following.container.threads:
        thread.join(5)
        assert not thread.is_alive()
    assert time.monotonic() - started < 1.0


def test_an_unexpected_error_while_reading_a_message_dead_letters_it(following, monkeypatch):
    dead = RecordingDeadLetters()
    following.on_message(_event(sequence="²"), dead)
    monkeypatch.setattr(cloudevents, "parse", lambda body: 1 // 0)
    following.on_message(_event(), dead)
    assert [reason.split(":")[0] for _, reason in dead.sent] == ["malformed", "unexpected ZeroDivisionError while reading it"]
