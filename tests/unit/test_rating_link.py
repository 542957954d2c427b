"""The signed rating link (issue #14 §8, services/notify/rating_link.py): it names only the case, the
resolution it rates and its expiry; anything forged, tampered or signed under another secret is
refused as forged, a link past its time as expired; it expires when the county's follow-up window is
over; and the result and 回访 messages carry it only when links are on."""
from __future__ import annotations

from collections import namedtuple
from datetime import datetime, timedelta, timezone

import pytest

from services.notify import rating_link, templates
from services.notify.rating import _state
from services.notify.rating_link import LinkRefused, sign, verify

SECRET = b"s" * 32
CASE = "0b9c6a0e-1111-2222-3333-444455556666"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
FOLLOW = {"after_minutes": 1440, "reply_within_minutes": 2880, "attempts": 2}     # the county defaults
Event = namedtuple("Event", "type position recorded_at data")


def _refused(token: str, secret: bytes = SECRET, now: datetime = NOW) -> str:
    with pytest.raises(LinkRefused) as refused:
        verify(secret, token, now)
    return refused.value.reason


def test_a_link_names_the_case_and_its_resolution_and_nothing_else():
    token = sign(SECRET, CASE, 42, NOW + timedelta(days=3))
    link = verify(SECRET, token, NOW)
    assert (link.case_id, link.resolved_position, link.expires) == (CASE, 42, NOW + timedelta(days=3))
    case_id, position, expires, mac = token.split(".")
    assert case_id == CASE and int(position, 16) == 42 and len(mac) == 22     # no name, phone or tracking number


@pytest.mark.parametrize("tamper", [
    lambda t: t.replace(".2a.", ".2b."),                                   # another resolution of the case
    lambda t: t.replace(CASE, CASE[:-1] + "7"),                            # another case
    lambda t: ".".join(t.split(".")[:2] + [format(int(t.split(".")[2], 16) + 86400, "x")] + t.split(".")[3:]),
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),                     # the signature itself
    lambda t: t + ".x", lambda t: "", lambda t: "../../api/v1/cases", lambda t: t.replace(".", "-"),
])
def test_a_tampered_or_malformed_link_is_forged(tamper):
    assert _refused(tamper(sign(SECRET, CASE, 42, NOW + timedelta(days=3)))) == "forged"


def test_a_link_signed_under_another_secret_is_forged_even_when_expired():
    token = sign(b"o" * 32, CASE, 42, NOW - timedelta(days=1))
    assert _refused(token) == "forged"           # the signature first: "expired" is said only of our links


def test_a_link_past_its_time_is_expired():
    token = sign(SECRET, CASE, 42, NOW + timedelta(hours=1))
    assert verify(SECRET, token, NOW + timedelta(minutes=59)).case_id == CASE
    assert _refused(token, now=NOW + timedelta(hours=1)) == "expired"


def test_it_expires_when_the_follow_up_window_is_over_plus_a_day():
    """After the last ask's reply time nobody is asked any more (notify records unreachable): 1 day until
    the ask + 2 asks × 2 days to reply, and a day's grace for a result held back by quiet hours."""
    assert rating_link.expiry("2026-01-05T09:00:00.000000Z", FOLLOW) == NOW + timedelta(days=1 + 4 + 1)


def test_the_url_rates_the_latest_result_and_is_empty_when_links_are_off():
    history = [Event("case.reported", 1, "2026-01-01T09:00:00.000000Z", {}),
               Event("case.resolved", 5, "2026-01-02T09:00:00.000000Z", {}),
               Event("case.reopened", 7, "2026-01-03T09:00:00.000000Z", {}),
               Event("case.resolved", 9, "2026-01-05T09:00:00.000000Z", {})]
    url = rating_link.url_for(SECRET, "https://12345.example.gov.cn/", CASE, history, FOLLOW)
    assert url.startswith("https://12345.example.gov.cn/console/rate/" + CASE + ".9.")
    link = verify(SECRET, url.rsplit("/", 1)[1], NOW)
    assert link.expires == rating_link.expiry("2026-01-05T09:00:00.000000Z", FOLLOW)
    assert rating_link.url_for(None, "https://x", CASE, history, FOLLOW) == ""
    assert rating_link.url_for(SECRET, "https://x", CASE, history[:1], FOLLOW) == ""


def test_the_result_and_follow_up_messages_carry_the_link_only_when_given():
    ctx = {"county_name": "龙江县", "tracking_no": "LJ-20260105-0001", "resolution": "路灯已修好", "category_name": "",
           "place_name": "", "phone_masked": "", "language": "zh"}
    url = "https://12345.example.gov.cn/console/rate/abc"
    for name in ("result", "follow_up"):
        assert url in templates.render(name, "zh", {**ctx, "rate_url": url})
        assert url in templates.render(name, "en", {**ctx, "rate_url": url})
        assert "console/rate" not in templates.render(name, "zh", {**ctx, "rate_url": ""})
        assert "console/rate" not in templates.render(name, "zh", ctx)      # a caller that gives no link


def test_the_state_of_a_link_follows_the_case():
    from minqing.casefile import CaseFile
    resolved = Event("case.resolved", 5, "2026-01-02T09:00:00.000000Z", {"resolution": "修好了"})
    rated = Event("case.followed_up", 8, "2026-01-03T09:00:00.000000Z",
                  {"rating": "unsatisfied", "via": "sms", "solved": False})
    link = rating_link.Link(CASE, 5, NOW)
    assert _state(link, [resolved], CaseFile(CASE, status="delivered")) == ("awaiting", None)
    assert _state(link, [resolved, rated], CaseFile(CASE, status="reopened")) == ("answered", rated)
    again = Event("case.resolved", 11, "2026-01-04T09:00:00.000000Z", {"resolution": "再次修好"})
    assert _state(link, [resolved, again], CaseFile(CASE, status="delivered"))[0] == "closed"     # an older link
    unreachable = Event("case.followed_up", 8, "2026-01-09T09:00:00.000000Z", {"rating": "unreachable", "via": "sms"})
    assert _state(link, [resolved, unreachable], CaseFile(CASE, status="followed_up"))[0] == "closed"
