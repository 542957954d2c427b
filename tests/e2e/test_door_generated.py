"""Generated hostile input at the door (issue #12), on the whole stack over PostgreSQL and over the
embedded default, SQLite: hypothesis puts NUL, other control characters, unpaired surrogates,
non-characters, deep nesting and huge numbers into every string and number field of a report (and
into routing's note and resolution bodies). Never a 5xx; every report that is accepted is assigned,
so nothing that got in can stall routing.

The number of examples is bounded (REPORTS + NOTES per backend) to keep each backend well under 90 s.
"""
from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.e2e.conftest import Stack
from tests.e2e.test_case_flow import _wait_case, report

REPORTS, NOTES = 70, 25
PER_TOKEN = 20         # intake's per-token rate limit allows a burst of 30
RAW = "\u2063RAW\u2063"   # a placeholder string, replaced by a raw JSON literal after encoding
STRING_FIELDS = [("county",), ("channel",), ("category",), ("kind",), ("urgency",), ("summary",), ("details",),
                 ("location", "township"), ("location", "village"), ("location", "hamlet"), ("location", "address"),
                 ("reporter", "name"), ("reporter", "phone"), ("reporter", "id_number"),
                 ("attachments", 0, "ref"), ("attachments", 0, "media_type"), ("attachments", 0, "name"),
                 ("reported_at",), ("paper_form_ref",), ("agent",)]
NUMBER_FIELDS = [("location", "coordinates", "lat"), ("location", "coordinates", "lon")]
HOSTILE_PIECES = ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9f", "\ud800", "\udbff", "\udc00", "\udfff", "\ufffe",
                  "\uffff", "\ufdd0", "\U0010ffff", "\n", "\r", "\t", "\u2028", "\u202e", "\ufeff", "'", '"', "\\",
                  "<script>", "%00", "黑岗乡", "wang@example.cn", "13812345678"]
NUMBER_LITERALS = ["1e400", "-1e400", "9" * 5000, "-" + "9" * 400, "9223372036854775808", "NaN", "Infinity",
                   "-Infinity", "1e-400", "-0", "0.0000001", "45.5", "1" + "0" * 30, "123.1802"]

hostile_text = st.lists(st.one_of(st.text(max_size=6), st.sampled_from(HOSTILE_PIECES)), min_size=1,
                        max_size=6).map("".join)
nesting = st.integers(min_value=1, max_value=1200).map(lambda n: "[" * n + "]" * n)
number_literal = st.one_of(st.sampled_from(NUMBER_LITERALS), st.integers().map(str),
                           st.floats(allow_nan=False, allow_infinity=False).map(repr))
raw_value = st.one_of(number_literal, nesting)


def _set(body: dict, path: tuple, value) -> None:
    node = body
    for key in path[:-1]:
        if isinstance(key, int):
            while len(node) <= key:
                node.append({"ref": "https://files.example.cn/1.jpg"})
        elif key not in node or node[key] is None:
            node[key] = [] if key == "attachments" else {}
        node = node[key]
    node[path[-1]] = value


@st.composite
def hostile_changes(draw) -> list[tuple[tuple, str, bool]]:
    """(field path, value, raw?) for one to three fields; raw values are JSON literals."""
    changes = []
    for path in draw(st.lists(st.sampled_from(STRING_FIELDS + NUMBER_FIELDS), min_size=1, max_size=3, unique=True)):
        if path in NUMBER_FIELDS or draw(st.integers(0, 4)) == 0:
            changes.append((path, draw(raw_value), True))
        else:
            changes.append((path, draw(hostile_text), False))
    return changes


def hostile_report(changes: list[tuple[tuple, str, bool]]) -> bytes:
    """A valid report (a fresh phone each time, so reports are not merged as repeats) with `changes`."""
    body = report(location={"township": "黑岗乡", "village": "靠山村", "hamlet": "靠山村11屯",
                            "coordinates": {"lat": 47.33, "lon": 123.18}})
    for path, value, raw in changes:
        _set(body, path, RAW if raw else value)
    text = json.dumps(body)          # ASCII: a lone surrogate travels as its \\u escape, as a client sends it
    for _, value, raw in changes:
        if raw:
            text = text.replace(json.dumps(RAW), value, 1)
    return text.encode()


class _Door:
    """Posts generated input to one stack and keeps what it must check afterwards."""

    def __init__(self, stack: Stack):
        self.stack, self.accepted, self.statuses, self.sent = stack, [], {}, 0
        self.token = None

    def post(self, path: str, raw: bytes, token: str | None = None) -> tuple[int, object]:
        if token is None:
            if self.sent % PER_TOKEN == 0:
                self.token = self.stack.issue("operator")
            self.sent += 1
            token = self.token
        code, answer = self.stack.request("POST", path, raw=raw, token=token)
        self.statuses[code] = self.statuses.get(code, 0) + 1
        assert code < 500, (raw[:300], answer)
        if 400 <= code < 500 and code != 429:
            assert isinstance(answer, dict) and answer["error"]["code"], answer
        return code, answer


def _run(stack: Stack) -> None:
    door = _Door(stack)
    settle = settings(max_examples=REPORTS, deadline=None, database=None, suppress_health_check=list(HealthCheck))

    @settle
    @given(hostile_changes())
    def reports(changes):
        code, answer = door.post("/api/v1/cases", hostile_report(changes))
        if code == 201:      # a repeat of an open case is handled as that case
            door.accepted.append(answer["merged_into"] or answer["case_id"])

    reports()
    code, case = door.post("/api/v1/cases", json.dumps(report(summary="生成输入测试：承办中的诉求")).encode())
    assert code == 201, case
    _wait_case(stack, case["case_id"], "assigned", timeout=60)
    cadre = stack.issue("cadre", "longjiang", "heigang.kaoshan-station", "lj-c002")

    @settings(max_examples=NOTES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(hostile_text.map(lambda t: json.dumps({"note": t})),
                     raw_value.map(lambda literal: '{"note": %s}' % literal)))
    def notes(raw):
        door.post(f"/api/v1/cases/{case['case_id']}/notes", raw.encode(), token=cadre)

    notes()
    assert door.post(f"/api/v1/cases/{case['case_id']}/resolve", b'{"resolution": "\\u5df2\\u529e\\u7ed3"}',
                     token=cadre)[0] == 200
    deadline = time.monotonic() + 60
    for case_id in door.accepted:
        _wait_case(stack, case_id, "assigned", timeout=max(1.0, deadline - time.monotonic()))
    _wait_case(stack, case["case_id"], "resolved", timeout=30)
    assert door.statuses.get(201, 0) >= 1 and sum(c for s, c in door.statuses.items() if s in (400, 422)) >= 20, \
        door.statuses


def test_generated_hostile_input_on_postgresql(stack):
    _run(stack)


def test_generated_hostile_input_on_sqlite(sqlite_stack):
    _run(sqlite_stack)
