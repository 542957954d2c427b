"""`case.followed_up` gained `solved` (issue #17 §3) without a new version: events written before it
still validate and read (readers treat it as null); a new one carries a boolean and nothing else."""
import pytest

from minqing import contract
from minqing.contract import ContractViolation


def test_an_old_follow_up_without_solved_still_reads():
    old = {"case_id": "c1", "rating": "satisfied", "via": "sms", "asks": 1, "by": None}
    assert contract.validate_event("case.followed_up", old) == 1
    assert contract.upcast("case.followed_up", 1, dict(old)) == (1, old)
    assert contract.event_type("case.followed_up").validator.load(old)["solved"] is None


@pytest.mark.parametrize("solved", [True, False, None])
def test_solved_is_true_false_or_null(solved):
    contract.validate_event("case.followed_up", {"case_id": "c1", "rating": "unsatisfied", "via": "call",
                                                 "solved": solved})


@pytest.mark.parametrize("solved", ["yes", "true", 2, []])
def test_anything_else_is_refused(solved):
    with pytest.raises(ContractViolation) as caught:
        contract.validate_event("case.followed_up", {"case_id": "c1", "rating": "satisfied", "via": "sms",
                                                     "solved": solved})
    assert "solved" in caught.value.errors
