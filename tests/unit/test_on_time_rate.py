"""承诺期限兑现率 (on_time_rate) counts broken promises, not only late resolutions.

Seed 003 (农事村办): "对每一件办理事项、每一个办理环节，实行承诺服务，限时办结" and "以办理群众申请事项的数量、
办结率、承诺期限兑现率和群众满意率等来核定各级各干部政绩". The promise is the resolution deadline (限时办结);
it is kept when the matter is resolved by it, broken when the deadline lapses. Before this fix the
rate was resolved_on_time / resolved: a holder who let every deadline lapse and resolved nothing
showed no rate at all, and a case that lapsed, escalated automatically and was resolved within the
next tier's fresh deadline counted as a promise kept for its township and county — so a simulated
month with 354 lapses reported 承诺期限兑现率 100 % (issue #17's month report).
"""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from services.assessment.projection import AssessmentFacts
from services.assessment.scorecards import explain, scorecards
from services.assessment.tables import metadata_obj
from tests.unit.test_assessment_rates_property import HOLDERS, _events

VILLAGE, TOWNSHIP = HOLDERS[0], HOLDERS[2]          # lj-c002 at 靠山村's station, lj-c006 at 黑岗乡's centre


def _cards(steps, period="2026-H1"):      # START is 18:00 on 31 March: the steps cross into April
    engine = create_engine("sqlite://")
    metadata_obj.create_all(engine)
    with engine.begin() as conn:
        AssessmentFacts().apply_batch(conn, _events(steps))
    with engine.connect() as conn:
        cards = {(kind, c["subject"]): c for kind in ("cadre", "township", "county")
                 for c in scorecards(conn, "longjiang", period, kind)["cards"]}
        why = explain(conn, "longjiang", period, "county", "longjiang", "on_time_rate")
    engine.dispose()
    return cards, why


def test_a_lapse_then_a_prompt_next_tier_is_a_broken_promise_for_the_case():
    # case 1 (黑岗乡, even number): assigned to the village, lapses, escalates automatically to the township,
    # which resolves within its own fresh deadline. Case 3: resolved on time by the village.
    steps = [(0, 0, ("case.assigned", VILLAGE, 4.0, 10.0)),
             (0, 11, ("case.overdue", VILLAGE)),
             (0, 0, ("case.escalated", TOWNSHIP, True, "village")),
             (0, 2, ("case.resolved", TOWNSHIP, False)),
             (2, 0, ("case.assigned", VILLAGE, 4.0, 10.0)),
             (2, 1, ("case.resolved", VILLAGE, False))]
    cards, why = _cards(steps)
    # the county: 2 promises to residents, 1 kept (the lapsed one was not, whoever resolved it in the end)
    assert cards[("county", "longjiang")]["rates"]["on_time_rate"] == 0.5
    assert cards[("township", "heigang")]["rates"]["on_time_rate"] == 0.5
    # the village cadre: case 0 lapsed in their hands (broken), case 2 resolved in time (kept)
    village = cards[("cadre", VILLAGE[0])]
    assert village["rates"]["on_time_rate"] == 0.5
    assert village["counts"]["deadline_lapsed"] == 1
    # the township cadre kept the promise of its own holding
    assert cards[("cadre", TOWNSHIP[0])]["rates"]["on_time_rate"] == 1.0
    assert why["value"] == 0.5 and {r["metric"] for r in why["denominator"]} >= {"resolved", "deadline_lapsed"}


def test_a_holder_who_only_lets_deadlines_lapse_scores_zero_not_nothing():
    steps = [(0, 0, ("case.assigned", VILLAGE, 4.0, 10.0)), (0, 11, ("case.overdue", VILLAGE)),
             (2, 0, ("case.assigned", VILLAGE, 4.0, 10.0)), (2, 11, ("case.overdue", VILLAGE))]
    cards, _ = _cards(steps)
    assert cards[("cadre", VILLAGE[0])]["rates"]["on_time_rate"] == 0.0
    assert cards[("county", "longjiang")]["rates"]["on_time_rate"] == 0.0


def test_a_late_resolution_after_a_lapse_is_one_broken_promise():
    steps = [(0, 0, ("case.assigned", VILLAGE, 4.0, 10.0)), (0, 11, ("case.overdue", VILLAGE)),
             (0, 5, ("case.resolved", VILLAGE, False))]
    cards, _ = _cards(steps)
    card = cards[("cadre", VILLAGE[0])]
    assert (card["counts"]["resolved"], card["counts"]["resolved_on_time"], card["rates"]["on_time_rate"]) == (1, 0, 0.0)


@pytest.mark.parametrize("at, due, in_time", [
    ("2026-03-02T09:00:00.000000Z", "2026-03-02T09:00:00.000000Z", True),     # at the deadline: in time
    ("2026-03-02T09:00:00.000001Z", "2026-03-02T09:00:00.000000Z", False),
    ("2026-03-02T08:59:59.999999Z", "2026-03-02T09:00:00.000000Z", True),
    ("2026-03-02T09:00:00.000000Z", "2026-03-02T17:00:00+08:00", True),       # another form: parsed
    ("2026-03-02T09:00:01.000000Z", "2026-03-02T17:00:00+08:00", False),
    ("2026-03-02T09:00:00.000000Z", None, False),
])
def test_in_time_compares_instants_not_their_texts(at, due, in_time):
    """The ledger's one form (clock.isoformat) is compared as text (a rebuild's shortcut); any other
    form is parsed: the answer is the instants' order either way."""
    from services.assessment.attribution import _in_time
    assert _in_time(at, due) is in_time
