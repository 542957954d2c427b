"""County policy: the organisation tree, units, cadres and category catalogue of one county.

A policy file (YAML, `deploy/counties/<county>.yaml`) is validated here, then published to the ledger
as a versioned `policy.published` event on stream `county-<id>` (DESIGN principle 7). Services
read the policy from that event, never from the file, so a replay applies the version in force then.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import yaml
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from minqing.contract import TIERS
from minqing.http import flatten_errors
from minqing.ledger import ConcurrencyError, Ledger, Metadata, NewEvent, canonical_json

_CODE = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", error="must be letters, digits, '.', '_' or '-'")
_NAME = validate.Length(min=1, max=100)


class PolicyError(ValueError):
    """A policy file that cannot be published; `errors` maps paths in the file to messages."""

    def __init__(self, errors: Mapping[str, list[str]]):
        self.errors = dict(errors)
        lines = "\n".join(f"  {path}: {'; '.join(msgs)}" for path, msgs in sorted(self.errors.items()))
        super().__init__(f"the county policy has {len(self.errors)} error(s):\n{lines}")


class _Place(Schema):
    code = fields.String(required=True, validate=_CODE)
    name = fields.String(required=True, validate=_NAME)


class _Village(_Place):
    hamlets = fields.List(fields.Nested(_Place), load_default=list)


class _Township(_Place):
    villages = fields.List(fields.Nested(_Village), required=True)


class _Unit(_Place):
    tier = fields.String(required=True, validate=validate.OneOf(TIERS))
    covers = fields.List(fields.String(), required=True, validate=validate.Length(min=1))


class _Cadre(Schema):
    id = fields.String(required=True, validate=_CODE)
    name = fields.String(required=True, validate=_NAME)
    unit = fields.String(required=True)
    role = fields.String(required=True, validate=_NAME)
    duty = fields.Boolean(load_default=False)
    liaison = fields.List(fields.String(), load_default=list)


class _Calendar(Schema):
    holidays = fields.List(fields.Date(), load_default=list)
    workdays = fields.List(fields.Date(), load_default=list)
    covers = fields.List(fields.Integer(strict=True, validate=validate.Range(min=2000, max=2100)), load_default=list)

    @validates_schema
    def _consistent(self, data, **_):
        both = set(data["holidays"]) & set(data["workdays"])
        if both:
            raise ValidationError({"workdays": [f"{min(both)} is listed as a holiday too"]})
        for name in ("holidays", "workdays"):
            stray = sorted(d for d in data[name] if data["covers"] and d.year not in data["covers"])
            if stray:
                raise ValidationError({name: [f"{stray[0]} is outside the years in 'covers'"]})


class _Category(Schema):
    code = fields.String(required=True, validate=_CODE)
    key = fields.String(required=True, validate=_CODE)
    name = fields.String(required=True, validate=_NAME)
    start_tier = fields.String(required=True, validate=validate.OneOf(TIERS))
    department = fields.String(required=True)
    response_hours = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=720))
    day_kind = fields.String(load_default="calendar", validate=validate.OneOf(("working", "calendar")))
    time_limits = fields.Dict(keys=fields.String(validate=validate.OneOf(TIERS)),
                              values=fields.Integer(strict=True, validate=validate.Range(min=1, max=365)),
                              required=True)


class _Policy(Schema):
    county = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9-]{1,39}$",
                                                                    error="must be lower-case letters, digits and '-'"))
    name = fields.String(required=True, validate=_NAME)
    tracking_prefix = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{2,4}$",
                                                                            error="must be 2-4 capital letters"))
    timezone = fields.String(required=True)

    @validates("timezone")
    def _timezone(self, value, **_):
        from zoneinfo import ZoneInfo
        try:
            ZoneInfo(value)
        except (ValueError, KeyError, OSError):
            raise ValidationError(f"{value!r} is not an IANA time zone such as Asia/Shanghai")
    tiers = fields.List(fields.String(validate=validate.OneOf(TIERS)), required=True, validate=validate.Length(min=2))
    calendar = fields.Nested(_Calendar, load_default=None)
    townships = fields.List(fields.Nested(_Township), required=True, validate=validate.Length(min=1))
    units = fields.List(fields.Nested(_Unit), required=True, validate=validate.Length(min=1))
    cadres = fields.List(fields.Nested(_Cadre), required=True, validate=validate.Length(min=1))
    categories = fields.List(fields.Nested(_Category), required=True, validate=validate.Length(min=1))

    @validates_schema
    def _references(self, data, **_):
        errors: dict[str, list[str]] = {}
        places = {"county"}
        for t in data["townships"]:
            places.add(t["code"])
            for v in t["villages"]:
                places.add(v["code"])
                places.update(h["code"] for h in v["hamlets"])
        units = {u["code"]: u for u in data["units"]}
        for i, unit in enumerate(data["units"]):
            if unit["tier"] not in data["tiers"]:
                errors[f"units.{i}.tier"] = [f"{unit['tier']!r} is not one of this county's tiers"]
            for j, code in enumerate(unit["covers"]):
                if code not in places:
                    errors[f"units.{i}.covers.{j}"] = [f"unknown place {code!r}"]
        for i, cadre in enumerate(data["cadres"]):
            if cadre["unit"] not in units:
                errors[f"cadres.{i}.unit"] = [f"unknown unit {cadre['unit']!r}"]
            for j, code in enumerate(cadre["liaison"]):
                if code not in places:
                    errors[f"cadres.{i}.liaison.{j}"] = [f"unknown place {code!r}"]
        seen_codes: set[str] = set()
        for i, cat in enumerate(data["categories"]):
            if cat["code"] in seen_codes:
                errors[f"categories.{i}.code"] = [f"duplicate category code {cat['code']!r}"]
            seen_codes.add(cat["code"])
            if units.get(cat["department"], {}).get("tier") != "department":
                errors[f"categories.{i}.department"] = [f"{cat['department']!r} is not a department unit"]
            if cat["start_tier"] not in cat["time_limits"]:
                errors[f"categories.{i}.time_limits"] = [f"no time limit for the start tier {cat['start_tier']!r}"]
        if errors:
            raise ValidationError(errors)


def validate_policy(raw: Any) -> dict:
    """The validated policy as plain JSON-able data (dates as ISO strings), or PolicyError."""
    if not isinstance(raw, Mapping):
        raise PolicyError({"(file)": ["must be a YAML mapping"]})
    try:
        policy = _Policy().load(raw)
    except ValidationError as exc:
        raise PolicyError(flatten_errors(exc.messages, root="(file)")) from None
    if policy.get("calendar") is not None:
        policy["calendar"] = {k: sorted(v.isoformat() if hasattr(v, "isoformat") else v for v in vals)
                              for k, vals in policy["calendar"].items()}
    else:
        policy.pop("calendar", None)
    return policy


def read_policy_file(path: Path) -> dict:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError({"(file)": [f"cannot read {path}: {exc.strerror}"]}) from None
    except yaml.YAMLError as exc:
        raise PolicyError({"(file)": [f"not valid YAML: {exc}"]}) from None
    return validate_policy(raw)


def digest(policy: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(policy).encode()).hexdigest()


def publish(ledger: Ledger, policy: dict, actor: str) -> tuple[int, bool]:
    """Append `policy.published` unless the latest version is identical; return (version, published)."""
    stream = f"county-{policy['county']}"
    policy_digest = digest(policy)
    while True:
        history = ledger.read_stream(stream)
        published = [e for e in history if e.type == "policy.published"]
        if published and published[-1].data["digest"] == policy_digest:
            return published[-1].data["version"], False
        version = len(published) + 1
        event = NewEvent("policy.published", {"county": policy["county"], "version": version,
                                              "digest": policy_digest, "policy": policy},
                         Metadata(actor=actor, county=policy["county"]))
        try:
            ledger.append(stream, [event], expected_version=history[-1].version if history else 0)
            return version, True
        except ConcurrencyError:
            continue


@dataclass(frozen=True)
class Place:
    township: str
    village: str | None
    hamlet: str | None

    @property
    def codes(self) -> list[str]:
        """From the most specific place up to the county."""
        return [c for c in (self.hamlet, self.village, self.township) if c] + ["county"]


class CountyPolicy:
    """Read-only lookups over one published policy version."""

    def __init__(self, policy: Mapping[str, Any], version: int):
        self.doc = policy
        self.version = version
        self.county = policy["county"]

    @cached_property
    def _places(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for t in self.doc["townships"]:
            out[t["code"]] = {"tier": "township", "name": t["name"], "township": t["code"]}
            for v in t["villages"]:
                out[v["code"]] = {"tier": "village", "name": v["name"], "township": t["code"], "village": v["code"]}
                for h in v["hamlets"]:
                    out[h["code"]] = {"tier": "hamlet", "name": h["name"], "township": t["code"],
                                      "village": v["code"], "hamlet": h["code"]}
        return out

    def place_name(self, code: str | None) -> str | None:
        return self._places.get(code, {}).get("name") if code else None

    def resolve_place(self, township: str, village: str | None, hamlet: str | None) -> Place:
        """Accept codes or names; raise KeyError naming the field that does not fit."""
        def find(value: str, tier: str, parent_key: str | None, parent: str | None, field_name: str) -> str:
            for code, info in self._places.items():
                if info["tier"] == tier and value in (code, info["name"]) and (parent_key is None or info.get(parent_key) == parent):
                    return code
            raise KeyError(field_name)
        t = find(township, "township", None, None, "township")
        v = find(village, "village", "township", t, "village") if village else None
        h = find(hamlet, "hamlet", "village", v, "hamlet") if hamlet else None
        if hamlet and not village:
            raise KeyError("village")
        return Place(t, v, h)

    def category(self, code_or_key: str) -> dict | None:
        for cat in self.doc["categories"]:
            if code_or_key in (cat["code"], cat["key"]):
                return cat
        return None

    def unit(self, code: str) -> dict | None:
        return next((u for u in self.doc["units"] if u["code"] == code), None)

    def units_covering(self, place: Place, tier: str) -> list[dict]:
        codes = set(place.codes)
        return [u for u in self.doc["units"] if u["tier"] == tier and codes & set(u["covers"])]

    def cadres_of(self, unit: str) -> list[dict]:
        return [c for c in self.doc["cadres"] if c["unit"] == unit]

    def catalogue(self) -> dict:
        """The public catalogue: categories with codes and the place tree (no cadre names)."""
        return {
            "county": self.county,
            "name": self.doc["name"],
            "policy_version": self.version,
            "tiers": self.doc["tiers"],
            "categories": [{"code": c["code"], "key": c["key"], "name": c["name"], "start_tier": c["start_tier"]}
                           for c in self.doc["categories"]],
            "townships": [{"code": t["code"], "name": t["name"],
                           "villages": [{"code": v["code"], "name": v["name"],
                                         "hamlets": [{"code": h["code"], "name": h["name"]} for h in v["hamlets"]]}
                                        for v in t["villages"]]}
                          for t in self.doc["townships"]],
            "units": [{"code": u["code"], "name": u["name"], "tier": u["tier"]} for u in self.doc["units"]],
        }
