"""回访 reply codes (issue #17 §3; docs/notify.md): two digits answer both questions — solved (1 yes,
2 no), then satisfaction (1 satisfied, 2 basically satisfied, 3 unsatisfied); one digit keeps its old
meaning, satisfaction only."""
import pytest

from services.notify.followup import Reply, reply_code


@pytest.mark.parametrize("text, reply", [
    ("11", Reply("satisfied", True)),
    ("12", Reply("basically_satisfied", True)),
    ("23", Reply("unsatisfied", False)),
    (" 2 1 ", Reply("satisfied", False)),
    ("1，3。", Reply("unsatisfied", True)),
    ("1,2", Reply("basically_satisfied", True)),
    ("1", Reply("satisfied", None)),              # the old single-digit codes: satisfaction only
    (" 2 ", Reply("basically_satisfied", None)),
    ("3。", Reply("unsatisfied", None)),
])
def test_reply_codes(text, reply):
    assert reply_code(text) == reply


@pytest.mark.parametrize("text", ["", "4", "31", "14", "111", "好", "1 满意", "0", "21 3"])
def test_anything_else_is_not_a_reply_code(text):
    assert reply_code(text) is None
