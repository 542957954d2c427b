"""What text and numbers may enter Minqing: the one rule, applied at the door (issue #12).

Every JSON body, query string and form that a service reads (minqing.http, Open311's form reader)
is walked *before* its schema, and every bad value is named by its path (`reporter.name`,
`attachments.0.ref`); the schema fields of `TextField`/`LineField` apply the same rule to input that
does not come through the door (CLI, tests, other callers of a schema).

The rule — refuse, never strip: a stripped character changes what the resident said without
telling them, and silently "repaired" input is how two systems end up disagreeing about a record.
- Refused in every string (values and object keys): NUL and the other C0 controls except TAB, LF
  and CR; DEL; the C1 controls U+0080–U+009F; unpaired surrogates (JSON's `\\ud800` escape makes
  them; they cannot be encoded as UTF-8, so they break hashing, the vault and PostgreSQL); Unicode
  non-characters (U+FDD0–U+FDEF and U+xFFFE/U+xFFFF of every plane). PostgreSQL cannot store NUL
  in text at all, so one NUL that got in used to stop routing.
- TAB, LF and CR are allowed only in multi-line free text (a summary, details, a note, a reason,
  a resolution): `LineField`, query parameters and single-line form fields refuse them.
- Numbers: integers of at most 19 digits that fit a signed 64-bit column (PostgreSQL's bigint,
  SQLite's integer), finite floats; JSON has no NaN or Infinity, and Python's reader accepting them
  is not a reason to.
- JSON nesting is bounded at MAX_DEPTH (32) levels: a 1,000-deep body is refused before it is
  parsed (400), never left to the parser's recursion limit.
"""
from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields

MAX_DEPTH = 32
MAX_INT = 2**63 - 1
MAX_INT_DIGITS = 19

# C0 controls but TAB/LF/CR, DEL, C1 controls, surrogates (only unpaired ones survive json.loads
# as lone code points: a valid pair becomes one astral character), non-characters.
_BAD_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
                            "\ufffe\uffff\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0003fffe\U0003ffff"
                            "\U0004fffe\U0004ffff\U0005fffe\U0005ffff\U0006fffe\U0006ffff\U0007fffe\U0007ffff"
                            "\U0008fffe\U0008ffff\U0009fffe\U0009ffff\U000afffe\U000affff\U000bfffe\U000bffff"
                            "\U000cfffe\U000cffff\U000dfffe\U000dffff\U000efffe\U000effff\U000ffffe\U000fffff"
                            "\U0010fffe\U0010ffff]")
_BREAKS = re.compile("[\t\n\r]")
_TOKENS = re.compile(r'[\\"\[\]{}]')


def text_problem(value: str, multiline: bool = True) -> str | None:
    """Why `value` may not enter Minqing, or None."""
    bad = _BAD_MULTILINE.search(value)
    if bad is not None:
        char = bad.group()
        if "\ud800" <= char <= "\udfff":
            return f"contains an unpaired surrogate (U+{ord(char):04X}) at character {bad.start()}"
        if char in "\ufffe\uffff" or "\ufdd0" <= char <= "\ufdef" or ord(char) > 0xFFFF:
            return f"contains a Unicode non-character (U+{ord(char):04X}) at character {bad.start()}"
        return f"contains a control character (U+{ord(char):04X}) at character {bad.start()}"
    if not multiline and (brk := _BREAKS.search(value)) is not None:
        return f"contains a line break or tab (U+{ord(brk.group()):04X}); this field is one line"
    return None


def printable(value: str) -> str:
    """`value` safe to echo in an answer or a log line: refused characters as \\uXXXX escapes."""
    return _BAD_MULTILINE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


# Characters RFC 3986 never allows raw in a URI: a link carrying them was not percent-encoded, and
# a quote or angle bracket is how a link breaks out of the HTML attribute a client app puts it in.
_NOT_IN_URI = re.compile(r'[\s"<>`{}|\\^]')


def link_problem(value: str) -> str | None:
    """Why `value` may not be kept as a link that clients will show (an attachment, Open311's
    media_url), or None: only http(s) URLs with a host and without credentials. `javascript:`,
    `data:` or `file:` in a resident's report would run in, or read from, every client's app."""
    if (why := text_problem(value, multiline=False)) is not None:
        return why
    try:
        parts = urlsplit(value)
        parts.port    # raises for a port that is not a number
    except ValueError:
        return "must be an http(s) URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an http:// or https:// URL (no other scheme)"
    if _NOT_IN_URI.search(value):
        return "must be a URL with special characters percent-encoded (no spaces, quotes or angle brackets)"
    if not parts.hostname:
        return "must be an http(s) URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    return None


# ---- JSON at the door ------------------------------------------------------------------------

class _Refused:
    """A number the reader refused; the walk names its path (json.loads' hooks cannot)."""

    def __init__(self, reason: str):
        self.reason = reason


def _int(literal: str):
    if len(literal.lstrip("-")) > MAX_INT_DIGITS or abs(int(literal)) > MAX_INT:
        return _Refused(f"the number {literal[:24]}{'…' if len(literal) > 24 else ''} is too large "
                        f"(integers up to {MAX_INT})")
    return int(literal)


def _float(literal: str):
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        return _Refused(f"the number {literal[:24]}{'…' if len(literal) > 24 else ''} is too large for a float")
    return value


def _constant(name: str):
    return _Refused(f"{name} is not a JSON number")


class BadJson(ValueError):
    """A body that is not JSON at all, or nested too deep (an answer of 400, not of a field)."""


def depth_of(text: str, limit: int = MAX_DEPTH) -> int:
    """How deeply arrays and objects nest in `text` (brackets inside strings skipped), without
    parsing it; stops counting past `limit`. One pass over the structural characters: linear in
    the body, whatever quotes and backslashes it is made of."""
    depth = deepest = 0
    in_string = False
    escaped_at = -1
    for match in _TOKENS.finditer(text):
        at, char = match.start(), match.group()
        if at == escaped_at:
            continue
        if in_string:
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(text: str) -> Any:
    """The JSON value of `text`; refused numbers come back as markers that `problems` names.
    BadJson for a syntax error or nesting deeper than MAX_DEPTH."""
    if depth_of(text) > MAX_DEPTH:
        raise BadJson(f"nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except (ValueError, RecursionError) as exc:
        raise BadJson(f"not valid JSON: {exc}") from None


def problems(value: Any, path: str = "", multiline: bool = True) -> dict[str, list[str]]:
    """Every bad string, key and number in a parsed value, by path (`a.b.0.c`, as schema errors are)."""
    found: dict[str, list[str]] = {}
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if (why := text_problem(item, multiline)) is not None:
                found.setdefault(where or "body", []).append(why)
        elif isinstance(item, _Refused):
            found.setdefault(where or "body", []).append(item.reason)
        elif isinstance(item, dict):
            for key, child in item.items():
                key = key if isinstance(key, str) else str(key)     # YAML may have other keys
                child_path = f"{where}.{printable(key)}" if where else printable(key)
                if (why := text_problem(key, multiline=False)) is not None:
                    found.setdefault(child_path, []).append(f"the field name {why}")
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{where}.{i}" if where else str(i), child) for i, child in enumerate(item))
    return dict(sorted(found.items()))


# ---- the same rule in schemas -----------------------------------------------------------------

class TextField(fields.String):
    """Multi-line free text (summary, details, notes): the door's rule, TAB/LF/CR allowed."""
    multiline = True

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if (why := text_problem(text, self.multiline)) is not None:
            raise ValidationError(why)
        return text


class LineField(TextField):
    """One line of text (a name, a code, a reference): no line breaks or tabs either."""
    multiline = False
