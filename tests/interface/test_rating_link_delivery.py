"""The signed rating link in notify's messages on a real database (issue #14 §8): the result (统一送达)
and the 回访 ask carry a link to the console's rating page that names the resolution they report, and
an answer through an older link is refused once the case was resolved again."""
from __future__ import annotations

import re

import pytest

from minqing.ledger import NewEvent
from services.notify import followup, rating_link, settings
from tests.interface.test_notify_delivery import Recording, _cycle, _meta, report, resolve, world  # noqa: F401

SECRET = b"k" * 32


@pytest.fixture
def links_on(monkeypatch):
    """The link's configuration as a deployment gives it: the environment, read by notify's settings
    (its once-per-process copy emptied before and after, so this process reads these values)."""
    monkeypatch.setenv("MINQING_RATING_LINK_SECRET", SECRET.decode())
    monkeypatch.setenv("MINQING_PUBLIC_URL", "https://12345.example.gov.cn")
    monkeypatch.delenv("MINQING_RATING_LINK_SECRET_FILE", raising=False)
    settings._RATING_LINK.clear()
    yield
    settings._RATING_LINK.clear()


def test_the_result_and_the_follow_up_carry_a_link_to_this_resolution(world, links_on):
    ledger, vault, rules, clock = world
    report(ledger, vault, "c-0101")
    resolve(ledger, "c-0101")
    sms = Recording()
    for _ in range(3):
        _cycle(ledger, vault, rules, clock, {"log": Recording("log"), "sms": sms})
    resolved = next(e for e in ledger.read_stream("case-c-0101") if e.type == "case.resolved")
    texts = [m.body for m in sms.sent]
    result, ask = next(t for t in texts if "已办结" in t), next(t for t in texts if "回访" in t)
    for text in (result, ask):
        token = re.search(r"https://12345\.example\.gov\.cn/console/rate/(\S+)", text).group(1)
        link = rating_link.verify(SECRET, token, clock.now())
        assert (link.case_id, link.resolved_position) == ("c-0101", resolved.position)
        assert link.expires == rating_link.expiry(resolved.recorded_at, {"after_minutes": 0, "attempts": 2,
                                                                         "reply_within_minutes": 1}).replace(microsecond=0)
        assert "13900001111" not in text and "王五" not in text


def test_an_older_links_answer_is_refused_once_the_case_was_resolved_again(world):
    ledger, vault, rules, clock = world
    report(ledger, vault, "c-0102")
    resolve(ledger, "c-0102")
    first = next(e for e in ledger.read_stream("case-c-0102") if e.type == "case.resolved").position
    followup.record_follow_up(ledger, "c-0102", "unsatisfied", "sms", actor="channel:sms", county="heping")
    ledger.append("case-c-0102", [NewEvent("case.reopened", {"case_id": "c-0102", "reason": "不满意"},
                                           _meta("service:routing"))])
    resolve(ledger, "c-0102")
    with pytest.raises(followup.NotAwaiting):
        followup.record_follow_up(ledger, "c-0102", "satisfied", "online", actor="channel:rating_link",
                                  county="heping", resolved_position=first)
    latest = [e for e in ledger.read_stream("case-c-0102") if e.type == "case.resolved"][-1].position
    position = followup.record_follow_up(ledger, "c-0102", "satisfied", "online", actor="channel:rating_link",
                                         county="heping", resolved_position=latest, solved=True)
    recorded = ledger.read_all(position - 1, 1)[0].data
    assert (recorded["rating"], recorded["via"], recorded["solved"]) == ("satisfied", "online", True)
