"""The door's rule for text, numbers and links (minqing.text) and its use by minqing.http."""
import json

import pytest
from marshmallow import Schema, fields

from minqing import text
from minqing.http import ApiError, load_json
from minqing.text import LineField, TextField


@pytest.mark.parametrize("value", ["a\x00b", "a\x01", "\x1b[31m", "a\x7f", "a\x85b", "a\ud800b", "\udfff",
                                   "a\ufdd0", "a\ufffe", "a\U0010ffff"])
def test_bad_characters_are_refused_everywhere(value):
    assert text.text_problem(value) is not None
    assert text.text_problem(value, multiline=False) is not None


def test_line_breaks_only_in_multiline_text():
    assert text.text_problem("第一行\n第二行\r\n\t缩进") is None
    assert "one line" in text.text_problem("张\n三", multiline=False)
    assert text.text_problem("道路积水 🌧 a\U0001F600b") is None     # astral characters (valid pairs) are fine


class _Note(Schema):
    note = TextField(required=True)
    name = LineField()
    count = fields.Integer()
    items = fields.List(fields.Dict())


def _refusal(raw: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        load_json(raw, _Note())
    return caught.value


def test_nul_and_surrogates_are_named_by_path_with_schema_errors_at_once():
    error = _refusal(b'{"note": "a\\u0000b", "name": "a\\ud800b", "count": "x", "items": [{"k": "\\u0007"}]}')
    assert error.status == 422
    assert set(error.fields) == {"note", "name", "count", "items.0.k"}
    assert "U+0000" in error.fields["note"][0] and "surrogate" in error.fields["name"][0]


def test_a_bad_key_is_named_printably():
    error = _refusal(b'{"note": "x", "a\\u0000": 1}')
    assert "a\\u0000" in error.fields


def test_deep_nesting_is_400_before_parsing():
    error = _refusal(b'{"note": ' + b"[" * 1000 + b"]" * 1000 + b"}")
    assert error.status == 400 and "32" in error.fields["body"][0]
    deep_string = json.dumps({"note": "[" * 5000}).encode()   # brackets inside a string do not count
    assert load_json(deep_string, _Note())["note"] == "[" * 5000


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "9" * 5000, "9223372036854775808", "NaN", "Infinity"])
def test_huge_numbers_are_named(literal):
    error = _refusal(b'{"note": "x", "count": ' + literal.encode() + b"}")
    assert error.status == 422 and list(error.fields) == ["count"], error.fields


def test_clean_input_passes():
    assert load_json('{"note": "多行\\n文本", "name": "张三", "count": 9223372036854775807}'.encode(), _Note()) == {
        "note": "多行\n文本", "name": "张三", "count": 2**63 - 1}


def test_fields_apply_the_rule_outside_the_door():
    errors = _Note().validate({"note": "a\x00", "name": "a\nb"})
    assert set(errors) == {"note", "name"}


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,<script>alert(1)</script>",
                                 "file:///etc/passwd", "https://user:pw@files.example.cn/a.jpg", "https:///a.jpg",
                                 "https://files.example.cn/a b.jpg", 'https://x.cn/"onmouseover=', "ftp://x.cn/a",
                                 "//x.cn/a", "https://x.cn:port/", "att:1234"])
def test_only_http_links_with_a_host(url):
    assert text.link_problem(url) is not None


def test_http_links_pass():
    assert text.link_problem("https://files.longjiang.gov.cn/att/2026/a.jpg?sig=ab%20c") is None
    assert text.link_problem("HTTP://10.0.0.1:8080/x") is None


def test_printable_escapes_what_it_refuses():
    assert text.printable("a\x00b\ud800") == "a\\u0000b\\ud800"
    assert text.printable("正常\n文本") == "正常\n文本"


def test_measuring_depth_is_linear_whatever_the_quotes():
    """A body of escaped quotes once made the string-skipping regex quadratic (minutes for 64 KiB)."""
    import time
    started = time.monotonic()
    assert text.depth_of('"' + '\\"' * 32_000) == 0
    assert text.depth_of(json.dumps({"a": "\\[\\", "b": {"c": [[]]}})) == 4
    assert time.monotonic() - started < 2


def test_an_unreachable_broker_or_database_is_503_with_retry_after():
    """Issue #12 §3: an outage answered 500 internal_error; it is 503 unavailable, Retry-After: 5.
    (The database case runs on the real PostgreSQL in tests/fault/test_database_outage.py.)"""
    from amqp.exceptions import RecoverableConnectionError
    from kombu.exceptions import OperationalError as KombuOperationalError
    from sqlalchemy.exc import OperationalError
    from minqing.http import api

    def answer(exc):
        @api
        def handler(self, request):
            raise exc
        return handler(None, None)

    for exc, what in [(KombuOperationalError("connection refused"), "message broker"),
                      (RecoverableConnectionError("gone"), "message broker"),
                      (OperationalError("SELECT 1", {}, Exception("server closed the connection")), "database"),
                      (ConnectionResetError(), "backing service")]:
        response = answer(exc)
        body = json.loads(response.get_data())
        assert response.status_code == 503 and response.headers["Retry-After"] == "5", body
        assert body["error"]["code"] == "unavailable" and what in body["error"]["message"]
    assert answer(KeyError("bug")).status_code == 500
