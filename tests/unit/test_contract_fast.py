"""The compiled contract checks (minqing.contract_fast) never say yes where marshmallow and the
personal-data walk say no: every event type, a valid example built from its schema, and that example
broken field by field (missing, null, wrong types, out of range, raw personal data, refused
characters, unknown keys)."""
from __future__ import annotations

import copy

import pytest
from marshmallow import fields, validate

from minqing import contract, contract_fast

INSTANT = "2026-03-02T21:10:00.000000Z"


def example_value(field: fields.Field):
    for v in field.validators:
        if isinstance(v, validate.OneOf):
            return list(v.choices)[0]
        if isinstance(v, validate.Length) and v.equal is not None:
            return "a" * v.equal
        if isinstance(v, validate.Regexp):
            return "village"
    if type(field).__name__ == "Instant":
        return INSTANT
    if isinstance(field, fields.Nested):
        return example(type(field.schema))
    if isinstance(field, fields.List):
        return [example_value(field.inner)]
    if isinstance(field, fields.Boolean):
        return True
    if isinstance(field, fields.Integer):
        rng = [v for v in field.validators if isinstance(v, validate.Range)]
        return rng[0].min if rng and rng[0].min is not None else 3
    if isinstance(field, fields.Float):
        return 1.5
    if isinstance(field, fields.Date):
        return "2026-03-02"
    if isinstance(field, fields.Dict):
        return {"any": ["thing", 1]}
    return "lj-c001"


def example(schema_class) -> dict:
    return {name: example_value(f) for name, f in schema_class().load_fields.items()}


BAD_VALUES = [None, "", "x", 0, 1, -1, 10**400, 1.5, float("nan"), float("inf"), True, False, [], {}, ["x"],
              {"a": 1}, "a" * 5000, "13812345678", "call 0452-5612345", "zhang.san@example.com",
              "110105199003071234", "x\x00y", "\ud800", "line\nbreak", "2026-03-02", "2026-03-02T21:10:00",
              "not a date", "１３８１２３４５６７８", "c1\ufffe"]


def variants(data: dict):
    yield data
    yield {**data, "unknown_key": "x"}
    for key in data:
        without = dict(data)
        del without[key]
        yield without
        for bad in BAD_VALUES:
            yield {**data, key: bad}
        value = data[key]
        if isinstance(value, dict):
            for inner in value:
                for bad in BAD_VALUES:
                    broken = copy.deepcopy(data)
                    broken[key][inner] = bad
                    yield broken
        if isinstance(value, list) and value:
            for bad in BAD_VALUES:
                yield {**data, key: [bad]}


def full_errors(name: str, data) -> dict:
    etype = contract.event_type(name)
    errors = etype.validator.validate(dict(data))
    errors.update(contract._raw_personal_data(data))
    return errors


@pytest.mark.parametrize("name", sorted(contract.CATALOGUE))
def test_quick_yes_only_where_the_full_checks_say_yes(name):
    etype = contract.event_type(name)
    quick = contract_fast.compile_schema(etype.schema)
    data = example(etype.schema)
    assert full_errors(name, data) == {}, "the example itself must be valid"
    tried = 0
    for variant in variants(data):
        tried += 1
        if quick(variant) and contract_fast.strings_clean(variant):
            assert full_errors(name, variant) == {}, variant
        else:
            # the slow path still decides: same answer validate_event gave before the quick checks
            errors = full_errors(name, variant)
            if errors:
                with pytest.raises(contract.ContractViolation) as caught:
                    contract.validate_event(name, variant)
                assert caught.value.errors == errors
    assert tried > 50


def test_valid_events_take_the_quick_path():
    """All but the types with a field the compiler does not know (Date: visit.logged) compile."""
    slow = sorted(name for name, etype in contract.CATALOGUE.items()
                  if not contract_fast.compile_schema(etype.schema)(example(etype.schema)))
    assert slow == ["visit.logged"]


def test_strings_clean_matches_the_walk():
    for text in ["已联系村民，正在协调", "lj-c001", INSTANT, "5f0c2a1e-0d3b-4c55-9a51-0221a66230b1",
                 "联系电话13812345678", "１３８-１２３４-５６７８", "a＠example.com", "ok\tnot\x01", "路 3 号",
                 "tab\tand\nnewline", "x" * 300 + "13912345678"]:
        for value in (text, {"k": text}, [text], ({"a": [text]},)):
            assert contract_fast.strings_clean(value) == (contract._raw_personal_data(value) == {}), value
