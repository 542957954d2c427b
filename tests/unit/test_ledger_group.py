"""Group commit's bookkeeping (minqing.ledger_group) on a fake database call: who leads, what goes
in one call, and that each caller gets its own answer or its own exception. What the stored function
decides per group is tested on a real PostgreSQL in tests/interface/test_ledger_postgres_append.py."""
from __future__ import annotations

import threading

import pytest

from minqing import ledger_group
from minqing.ledger_group import Combiner, Group, arguments, outcomes


def group(name: str, events: int = 1, streams: tuple[str, ...] | None = None, expected=None) -> Group:
    streams = streams or (f"case-{name}",)
    return Group(list(streams), list(range(1, len(streams) + 1)), [expected] * len(streams),
                 [1 + i % len(streams) for i in range(events)], [f"{name}-{i}" for i in range(events)],
                 ["case.progress_noted"] * events, [1] * events, ["{}"] * events, ["{}"] * events,
                 ["h"] * events, ["t"] * events, f"at-{name}")


def test_arguments_concatenate_groups_with_shared_stream_indexes_and_cumulative_bounds():
    a = group("a", 2, ("s1", "s2"), expected=0)
    b = group("b", 3, ("s2", "s3"))
    (streams, w_stream, w_expected, g_writes, e_stream, e_group, g_events, g_at, ids, *_rest, types) = arguments([a, b])
    assert streams == ["s1", "s2", "s3"]
    assert w_stream == [1, 2, 2, 3] and w_expected == [0, 0, None, None]
    assert g_writes == [2, 4] and g_events == [2, 5]
    assert e_stream == [1, 2, 2, 3, 2]          # b's local 1,2,1 are the call's 2,3,2
    assert e_group == [1, 1, 2, 2, 2]
    assert types == "case.progress_noted"       # each type once: the NOTIFY's payload
    assert g_at == ["at-a", "at-b"] and ids == ["a-0", "a-1", "b-0", "b-1", "b-2"]


def test_outcomes_split_the_answer_per_group():
    groups = [group("a", 2), group("b", 1), group("c", 1), group("d", 1)]
    row = (["ok", "conflict", "recorded", "ok"], [None, "case-b", None, None], [None, 3, None, None],
           [None, 4, None, None], [11, 12, 0, 0, 13], [1, 2, 0, 0, 1], ["h1", "h2", None, None, "h3"])
    a, b, c, d = outcomes(groups, row)
    assert (a.status, a.positions, a.versions, a.hashes) == ("ok", [11, 12], [1, 2], ["h1", "h2"])
    assert (b.status, b.stream, b.expected, b.actual) == ("conflict", "case-b", 3, 4)
    assert c.status == "recorded"
    assert (d.status, d.positions) == ("ok", [13])


class FakeDatabase:
    """Answers every group 'ok' with consecutive positions; can be held mid-call and made to fail."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.position = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail_when = lambda groups: False

    def __call__(self, groups):
        self.calls.append([g.ids[0] for g in groups])
        self.entered.set()
        self.release.wait(5)
        if self.fail_when(groups):
            raise ValueError("refused: " + ",".join(g.ids[0] for g in groups))
        n = sum(len(g.ids) for g in groups)
        positions = list(range(self.position + 1, self.position + n + 1))
        self.position += n
        return (["ok"] * len(groups), [None] * len(groups), [None] * len(groups), [None] * len(groups),
                positions, [1] * n, [f"h{p}" for p in positions])


def _submit_while_the_leader_is_held(db: FakeDatabase, combiner: Combiner, followers: list[Group]) -> dict:
    """The first group's call is held inside the fake database while `followers` queue behind it."""
    answers: dict = {}

    def run(g: Group):
        try:
            answers[g.ids[0]] = combiner.submit(g)
        except Exception as exc:      # noqa: BLE001
            answers[g.ids[0]] = exc
    db.release.clear()
    leader = threading.Thread(target=run, args=(group("lead"),))
    leader.start()
    assert db.entered.wait(5)
    threads = [threading.Thread(target=run, args=(g,)) for g in followers]
    for t in threads:
        t.start()
    while len(combiner._queue) < len(followers):        # every follower queued behind the held call
        threading.Event().wait(0.001)
    db.release.set()
    for t in [leader, *threads]:
        t.join(5)
    return answers


def test_appends_that_wait_for_the_lock_go_in_one_call_and_each_gets_its_own_answer():
    db = FakeDatabase()
    combiner = Combiner(db)
    answers = _submit_while_the_leader_is_held(db, combiner, [group("a"), group("b", 3), group("c")])
    assert db.calls[0] == ["lead-0"]
    assert sorted(db.calls[1]) == ["a-0", "b-0", "c-0"] and len(db.calls) == 2
    got = {k: v.positions for k, v in answers.items()}
    assert got["lead-0"] == [1]
    assert sorted(p for k, v in got.items() if k != "lead-0" for p in v) == [2, 3, 4, 5, 6]
    assert len(got["b-0"]) == 3


def test_a_writer_alone_goes_at_once_in_a_call_of_its_own():
    db = FakeDatabase()
    combiner = Combiner(db)
    assert combiner.submit(group("x")).positions == [1]
    assert combiner.submit(group("y", 2)).positions == [2, 3]
    assert db.calls == [["x-0"], ["y-0"]]


def test_a_call_that_fails_is_retried_group_by_group_so_only_the_bad_caller_gets_the_error():
    db = FakeDatabase()
    db.fail_when = lambda groups: any(g.ids[0] == "bad-0" for g in groups)
    combiner = Combiner(db)
    answers = _submit_while_the_leader_is_held(db, combiner, [group("a"), group("bad"), group("c")])
    assert isinstance(answers["bad-0"], ValueError)
    assert answers["a-0"].status == "ok" and answers["c-0"].status == "ok"
    assert answers["lead-0"].status == "ok"
    assert ["bad-0"] in db.calls                      # the bad group alone, after the grouped call failed


def test_one_call_holds_at_most_max_events_and_never_one_event_id_twice(monkeypatch):
    monkeypatch.setattr(ledger_group, "MAX_EVENTS", 4)
    db = FakeDatabase()
    combiner = Combiner(db)
    twin = group("a")                                  # a retry of "a" racing the first: same ids
    answers = _submit_while_the_leader_is_held(db, combiner, [group("a"), group("big", 3), twin, group("z")])
    assert all(sum(1 for _ in call) for call in db.calls)
    for call in db.calls[1:]:
        assert len(call) == len(set(call))            # no id twice in one call
    sizes = {"lead-0": 1, "a-0": 1, "big-0": 3, "z-0": 1}
    assert all(sum(sizes[i] for i in call) <= 4 for call in db.calls)
    assert sum(len(c) for c in db.calls) == 5 and len(answers) == 4


def test_a_leader_stopped_mid_call_hands_the_others_groups_to_the_next_leader():
    class Stopped(BaseException):
        pass
    calls = []
    entered, release = threading.Event(), threading.Event()

    def call(groups):
        calls.append([g.ids[0] for g in groups])
        if len(calls) == 1:
            entered.set()
            release.wait(5)
            raise Stopped()
        n = sum(len(g.ids) for g in groups)
        return (["ok"] * len(groups), [None] * len(groups), [None] * len(groups), [None] * len(groups),
                list(range(1, n + 1)), [1] * n, ["h"] * n)
    combiner = Combiner(call)
    stopped, answers = [], {}

    def leader():
        try:
            combiner.submit(group("lead"))
        except Stopped:
            stopped.append(True)
    first = threading.Thread(target=leader)
    first.start()
    assert entered.wait(5)
    follower = threading.Thread(target=lambda: answers.setdefault("f", combiner.submit(group("f"))))
    follower.start()
    while not combiner._queue:
        threading.Event().wait(0.001)
    release.set()
    first.join(5)
    follower.join(5)
    assert stopped == [True]
    assert calls == [["lead-0"], ["f-0"]]            # the leader's own group is not sent again
    assert answers["f"].status == "ok"
    assert combiner.submit(group("next")).status == "ok"   # and the lead was laid down after


def test_the_call_sends_each_array_as_one_text_and_refuses_the_separator_where_json_does_not_escape_it():
    from minqing import ledger_pg
    a = group("a", 2, ("s1", "s2"))
    a.w_expected = [None, 3]
    wired = ledger_pg.wire(arguments([a]))
    assert wired[0] == "s1\x1fs2" and wired[2] == ",3"          # an empty element is NULL: any version
    assert wired[8] == "a-0\x1fa-1" and wired[-1] == "case.progress_noted"
    assert all(isinstance(v, str) for v in wired)
    bad = group("b")
    bad.ids = ["b\x1f0"]
    with pytest.raises(ValueError, match="U\\+001F"):
        ledger_pg.wire(arguments([bad]))
