"""A quick yes for the event contract: the contract's schemas compiled into plain checks (issue #16).

Validating an event with marshmallow, and walking it for raw personal data, cost 0.3–0.7 ms per event
on this machine — more than the append itself; a timer sweep of 1,000 due cases spent most of its
time there. Both checks only ever need a full answer when something is wrong. So:

* `compile_schema` turns a schema class into a function that answers True only when marshmallow
  would accept the data: the same types, required and null rules, unknown keys refused, and the
  field's own marshmallow validators (Length, OneOf, Range, Regexp; Instant's parse) called as they
  are. Anything it does not know — a field class or option it was not written for, a schema hook —
  makes it answer False for that schema, and a False always sends the event through marshmallow,
  whose answer (and error messages, naming every bad field) stands. A quick True is never looser
  than marshmallow; a test compares the two on every event type with valid and broken data.
* `strings_clean` answers True only when no string in the data holds raw personal data or a
  refused character (minqing.personal_data, minqing.text): strings that cannot hold a phone number,
  an identity number or an e-mail address (no run of three digits, no @) skip the four patterns.

minqing.contract.validate_event asks these first and falls back to its full checks on any False.
"""
from __future__ import annotations

import functools
import math
import re
from typing import Any, Callable, Mapping

from marshmallow import Schema, ValidationError, fields

from minqing.personal_data import find_raw_personal_data
from minqing.text import text_problem

Check = Callable[[Any], bool]

# Every match of minqing.personal_data's patterns holds three digits in a row (a phone's 1[3-9]\d, a
# landline's area code, an identity number) or an @ (full-width ＠ reads as @); `\d` is Unicode-wide
# here exactly as in those patterns, so full-width digits count.
_MAY_HOLD_PERSONAL_DATA = re.compile(r"\d{3}|[@\uff20]")
# A whole UUID is blanked out by find_raw_personal_data before it looks: never personal data.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def string_clean(value: str) -> bool:
    """True when minqing.contract would find nothing wrong with this one string."""
    if not (value.isascii() and value.isprintable()) and text_problem(value) is not None:
        return False
    if _MAY_HOLD_PERSONAL_DATA.search(value) is None or _UUID.fullmatch(value) is not None:
        return True
    if len(value) <= 64:          # ids, codes, instants: they repeat from event to event
        return _short_clean(value)
    return find_raw_personal_data(value) is None


@functools.lru_cache(maxsize=4096)
def _short_clean(value: str) -> bool:
    return find_raw_personal_data(value) is None


def strings_clean(value: Any) -> bool:
    """True when no string in `value` (walked as minqing.contract walks it) has a problem; False
    when one has, or when `value` holds a container type the quick walk does not know."""
    kind = type(value)
    if kind is str:
        return string_clean(value)
    if kind is dict:
        return all(strings_clean(v) for v in value.values())
    if kind is list or kind is tuple:
        return all(strings_clean(v) for v in value)
    if isinstance(value, (str, Mapping, list, tuple)):
        return False        # a subclass: let the full walk decide
    return True             # numbers, booleans, None: the full walk ignores them too


# ---- schemas -------------------------------------------------------------------------------------

class _Unsupported(Exception):
    pass


def _validators(field: fields.Field) -> Check:
    """The field's own marshmallow validators, called as marshmallow calls them."""
    validators = list(field.validators)

    def run(value) -> bool:
        try:
            for validator in validators:
                if validator(value) is False:
                    return False
        except ValidationError:
            return False
        return True
    return run


def _value_check(field: fields.Field) -> Check:
    """A check of a present, non-null value of `field`; _Unsupported for what it does not know."""
    if field.data_key is not None or field.attribute is not None:
        raise _Unsupported(f"{field!r}: data_key/attribute")
    kind = type(field)
    run = _validators(field)
    if kind is fields.String:
        return lambda v: type(v) is str and run(v)
    if kind.__name__ == "Instant" and kind.__mro__[1] is fields.String:
        from minqing.clock import parse_instant

        def instant(v) -> bool:
            if type(v) is not str or not run(v):
                return False
            try:
                parse_instant(v)
            except (ValueError, TypeError):
                return False
            return True
        return instant
    if kind is fields.Integer:
        return lambda v: type(v) is int and run(v)     # strict or not, a plain int is accepted as it is
    if kind is fields.Float:
        if getattr(field, "allow_nan", False):
            raise _Unsupported("Float(allow_nan=True)")

        def number(v) -> bool:
            if type(v) is float:
                return math.isfinite(v) and run(v)
            if type(v) is int:
                try:
                    as_float = float(v)
                except OverflowError:
                    return False
                return run(as_float)
            return False
        return number
    if kind is fields.Boolean:
        if True not in field.truthy or False not in field.falsy:
            raise _Unsupported("Boolean without True/False")
        return lambda v: (v is True or v is False) and run(v)
    if kind is fields.Dict:
        if field.key_field is not None or field.value_field is not None:
            raise _Unsupported("Dict with key or value fields")
        return lambda v: type(v) is dict and run(v)
    if kind is fields.Nested:
        if field.many or field.only or field.exclude:
            raise _Unsupported("Nested with many/only/exclude")
        inner = compile_schema(type(field.schema))
        return lambda v: type(v) is dict and inner(v) and run(v)
    if kind is fields.List:
        item = _field_check(field.inner)
        return lambda v: (type(v) is list or type(v) is tuple) and all(item(x) for x in v) and run(v)
    raise _Unsupported(kind.__name__)


def _field_check(field: fields.Field) -> Check:
    """A check of the field's value as found in the data (None for an absent key is handled by the
    schema); null only where the field allows it."""
    value_ok = _value_check(field)
    allow_none = field.allow_none

    def check(v) -> bool:
        if v is None:
            return allow_none
        return value_ok(v)
    return check


def compile_schema(schema_class: type[Schema]) -> Check:
    """A function answering True only where `schema_class().validate(data)` finds no error; for a
    schema it cannot compile, a function that always answers False (marshmallow decides)."""
    cached = _COMPILED.get(schema_class)
    if cached is not None:
        return cached
    try:
        compiled = _compile(schema_class())
    except _Unsupported:
        compiled = _never
    _COMPILED[schema_class] = compiled
    return compiled


def _never(_data) -> bool:
    return False


def _compile(schema: Schema) -> Check:
    from marshmallow import RAISE
    if schema.unknown != RAISE or schema._hooks and any(schema._hooks.values()) or schema.many or schema.partial:
        raise _Unsupported("schema options or hooks")
    load_fields = schema.load_fields
    required = tuple(name for name, f in load_fields.items() if f.required)
    checks = {name: _field_check(f) for name, f in load_fields.items()}
    allowed = frozenset(load_fields)

    def check(data) -> bool:
        if type(data) is not dict:
            return False
        for name in required:
            if name not in data:
                return False
        for key, value in data.items():
            field_check = checks.get(key)
            if field_check is None or not field_check(value):
                return False
        return True
    check.allowed = allowed     # for tests
    return check


_COMPILED: dict[type[Schema], Check] = {}
