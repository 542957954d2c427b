"""County policy: the organisation tree, units, cadres and category catalogue of one county.

A policy file (YAML, `deploy/counties/<county>.yaml`) is validated here, then published to the ledger
as a versioned `policy.published` event on stream `county-<id>` (DESIGN principle 7). Services
read the policy from that event, never from the file, so a replay applies the version in force then.

A service's own section of the policy (notify's `notify`, intake's `duplicates`) is that service's:
its schema is in its `policy.py`, registered as a `Section` (below).

Long because the schema's cross-checks (ladder, units, cadres, categories and time limits refer to each
other) and the lookups over a published policy (`CountyPolicy`) read best beside the schema they check.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from minqing.contract import TIERS
from minqing.http import flatten_errors
from minqing import text, versioned
from minqing.ledger import Ledger

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
    tier = fields.String(required=True, validate=_CODE)      # one of the county's tier codes
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


LEVEL_NAMES = {"hamlet": "屯/村民小组", "village": "村/社区", "township": "乡镇/街道",
               "department": "县直部门", "county": "县/区"}


class _Tier(Schema):
    """One rung of the county's ladder. `level` is the glossary tier it sits at; `joint` starts joint
    handling (会诊) when a case arrives; `dispatch_day` puts arriving cases on the agenda of a monthly
    dispatch meeting held that day of the month (seed 004: 区"一线办"每月25日召开调度会)."""
    code = fields.String(required=True, validate=_CODE)
    name = fields.String(required=True, validate=_NAME)
    level = fields.String(required=True, validate=validate.OneOf(TIERS))
    joint = fields.Boolean(load_default=False)
    dispatch_day = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1, max=28))


class _TierRef(fields.Field):
    """A tier given as a glossary level ("village") or as a full mapping."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            if value not in TIERS:
                raise ValidationError(f"must be one of {', '.join(TIERS)}, or a mapping with code, name and level")
            value = {"code": value, "name": LEVEL_NAMES[value], "level": value}
        if not isinstance(value, Mapping):
            raise ValidationError("must be a tier level or a mapping with code, name and level")
        return _Tier().load(value)


class _Pressure(Schema):
    level = fields.String(required=True, validate=validate.OneOf(("chase", "supervise", "listed")))
    after_hours = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=24 * 90))
    reply_within_hours = fields.Integer(load_default=None, allow_none=True, strict=True,
                                        validate=validate.Range(min=1, max=24 * 30))


class _Warnings(Schema):
    response = fields.Integer(load_default=2, strict=True, validate=validate.Range(min=0, max=720))
    resolution = fields.Integer(load_default=24, strict=True, validate=validate.Range(min=0, max=720))


_DEFAULT_PRESSURE = [{"level": "chase", "after_hours": 0, "reply_within_hours": None},
                     {"level": "supervise", "after_hours": 48, "reply_within_hours": 24},
                     {"level": "listed", "after_hours": 120, "reply_within_hours": 24}]


class _Escalation(Schema):
    """What the timers do (issue #5 §5), in one place per county."""
    warn_before_hours = fields.Nested(_Warnings, load_default=lambda: _Warnings().load({}))
    on_resolution_overdue = fields.String(load_default="escalate", validate=validate.OneOf(("escalate", "pressure")))
    pressure = fields.List(fields.Nested(_Pressure), load_default=lambda: [dict(p) for p in _DEFAULT_PRESSURE])
    reopen = fields.String(load_default="same", validate=validate.OneOf(("same", "up")))

    @validates_schema
    def _ladder(self, data, **_):
        levels = [p["level"] for p in data["pressure"]]
        order = ["chase", "supervise", "listed"]
        if levels != sorted(levels, key=order.index) or len(set(levels)) != len(levels):
            raise ValidationError({"pressure": ["levels must rise chase → supervise → listed, each once"]})
        hours = [p["after_hours"] for p in data["pressure"]]
        if hours != sorted(hours):
            raise ValidationError({"pressure": ["after_hours must not fall as the level rises"]})


class _Category(Schema):
    code = fields.String(required=True, validate=_CODE)
    key = fields.String(required=True, validate=_CODE)
    name = fields.String(required=True, validate=_NAME)
    start_tier = fields.String(required=True, validate=_CODE)
    department = fields.String(load_default=None, allow_none=True)    # needed when the ladder has a department tier
    co_departments = fields.List(fields.String(), load_default=list)   # co-handlers when joint handling starts
    on_resolution_overdue = fields.String(load_default=None, allow_none=True,
                                          validate=validate.OneOf(("escalate", "pressure")))
    response_hours = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=720))
    day_kind = fields.String(load_default="working", validate=validate.OneOf(("working", "calendar")))
    time_limits = fields.Dict(keys=fields.String(validate=_CODE),
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
    tiers = fields.List(_TierRef(), required=True, validate=validate.Length(min=2))
    escalation = fields.Nested(_Escalation, load_default=lambda: _Escalation().load({}))
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
        tiers = {t["code"]: t for t in data["tiers"]}
        if len(tiers) != len(data["tiers"]):
            errors["tiers"] = ["tier codes must be unique"]
        units = {u["code"]: u for u in data["units"]}
        for i, unit in enumerate(data["units"]):
            if unit["tier"] not in tiers:
                errors[f"units.{i}.tier"] = [f"{unit['tier']!r} is not one of this county's tiers"]
            for j, code in enumerate(unit["covers"]):
                if code not in places:
                    errors[f"units.{i}.covers.{j}"] = [f"unknown place {code!r}"]
        staffed = {c["unit"] for c in data["cadres"]}
        for i, unit in enumerate(data["units"]):
            if unit["code"] not in staffed:
                errors.setdefault(f"units.{i}.code", []).append(f"unit {unit['code']!r} has no cadre: cases sent there would wait for nobody")
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
            def is_department(code: str) -> bool:
                return tiers.get(units.get(code, {}).get("tier"), {}).get("level") == "department"
            ladder = [t for t in data["tiers"]][[t["code"] for t in data["tiers"]].index(cat["start_tier"]):] \
                if cat["start_tier"] in tiers else []
            needs_department = any(t["level"] == "department" for t in ladder)
            if cat["department"] is None and needs_department:
                errors[f"categories.{i}.department"] = ["required: the ladder above the start tier has a department tier"]
            elif cat["department"] is not None and not is_department(cat["department"]):
                errors[f"categories.{i}.department"] = [f"{cat['department']!r} is not a department unit"]
            for j, code in enumerate(cat["co_departments"]):
                if not is_department(code) or code == cat["department"]:
                    errors[f"categories.{i}.co_departments.{j}"] = [f"{code!r} is not another department unit"]
            if cat["start_tier"] not in tiers:
                errors[f"categories.{i}.start_tier"] = [f"{cat['start_tier']!r} is not one of this county's tiers"]
            elif any(t not in cat["time_limits"] for t in list(tiers)[list(tiers).index(cat["start_tier"]):]):
                missing = [t for t in list(tiers)[list(tiers).index(cat["start_tier"]):] if t not in cat["time_limits"]]
                errors[f"categories.{i}.time_limits"] = [f"no time limit for tier(s) {', '.join(missing)} "
                                                         f"(every tier from the start tier up needs one)"]
            for tier in cat["time_limits"]:
                if tier not in tiers:
                    errors[f"categories.{i}.time_limits.{tier}"] = [f"{tier!r} is not one of this county's tiers"]
        for section in sections():
            for path, messages in (section.check(data) if section.check else {}).items():
                errors.setdefault(f"{section.name}.{path}", []).extend(messages)
        if errors:
            raise ValidationError(errors)


# ---- the services' sections ------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    """A service's own section of the county policy (notify's `notify`, intake's `duplicates`): its
    schema, with defaults for every field, and `check(policy)`, the section's cross-checks against the
    rest of the policy ({path inside the section: [reasons]}). A service declares its Section in its
    `policy.py` and names it in pyproject.toml under the entry points `minqing.policy_sections`, so
    the kernel validates it without importing any service."""
    name: str
    schema: type
    check: Callable[[Mapping[str, Any]], dict[str, list[str]]] | None = None

    def defaults(self) -> dict:
        return self.schema().load({})


@functools.cache
def sections() -> tuple[Section, ...]:
    from importlib.metadata import entry_points
    found = tuple(sorted((ep.load() for ep in entry_points(group="minqing.policy_sections")), key=lambda s: s.name))
    if not found:      # not installed (pip install -e .): a policy would silently lose its sections
        raise RuntimeError("no county policy sections are registered: install the package (make deps)")
    return found


@functools.cache
def _policy_schema() -> type:
    """The whole policy schema: the kernel's fields and every service's section."""
    return type("Policy", (_Policy,), {s.name: fields.Nested(s.schema, load_default=s.defaults) for s in sections()})


def validate_policy(raw: Any) -> dict:
    """The validated policy as plain JSON-able data (dates as ISO strings), or PolicyError."""
    if not isinstance(raw, Mapping):
        raise PolicyError({"(file)": ["must be a YAML mapping"]})
    try:
        policy = _policy_schema()().load(raw)
    except ValidationError as exc:
        raise PolicyError(flatten_errors(exc.messages, root="(file)")) from None
    if policy.get("calendar") is not None:
        policy["calendar"] = {k: sorted(v.isoformat() if hasattr(v, "isoformat") else v for v in vals)
                              for k, vals in policy["calendar"].items()}
    else:
        policy.pop("calendar", None)
    return policy


def _read_yaml(path: Path, where: str) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError({where: [f"cannot read {path}: {exc.strerror}"]}) from None
    except yaml.YAMLError as exc:
        raise PolicyError({where: [f"not valid YAML: {exc}"]}) from None


def _include_calendars(raw: Any, base: Path) -> Any:
    """`calendar.include: [file, …]` merges shared calendar files (the State Council's holidays are the
    same for every county) into the policy, so the published event carries the whole calendar."""
    calendar = raw.get("calendar") if isinstance(raw, Mapping) else None
    if not isinstance(calendar, Mapping) or "include" not in calendar:
        return raw
    merged = {k: list(v) for k, v in calendar.items() if k != "include" and isinstance(v, list)}
    includes = calendar["include"]
    if not isinstance(includes, list):
        raise PolicyError({"calendar.include": ["must be a list of calendar files"]})
    for i, name in enumerate(includes):
        where = f"calendar.include.{i}"
        shared = _read_yaml(base / str(name), where)
        if not isinstance(shared, Mapping):
            raise PolicyError({where: ["must be a YAML mapping with holidays, workdays and covers"]})
        for key in ("holidays", "workdays", "covers"):
            merged.setdefault(key, []).extend(shared.get(key) or [])
    return {**raw, "calendar": {k: sorted(set(v), key=str) for k, v in merged.items()}}


def read_policy_file(path: Path) -> dict:
    """A policy file, validated; its text obeys the door's rule (minqing.text), as every input that
    becomes an event does."""
    raw = _read_yaml(path, "(file)")
    if refused := text.problems(raw):
        raise PolicyError(refused)
    return validate_policy(_include_calendars(raw, Path(path).parent))


def digest(policy: Mapping[str, Any]) -> str:
    return versioned.digest(policy)


def publish(ledger: Ledger, policy: dict, actor: str) -> tuple[int, bool]:
    """Append `policy.published` unless the latest version is identical; return (version, published)."""
    return versioned.publish(ledger, f"county-{policy['county']}", "policy.published", policy["county"], "policy",
                             policy, actor)


@dataclass(frozen=True)
class Place:
    township: str
    village: str | None
    hamlet: str | None

    @property
    def codes(self) -> list[str]:
        """From the most specific place up to the county."""
        return [c for c in (self.hamlet, self.village, self.township) if c] + ["county"]


def _lift(policy: Mapping[str, Any]) -> dict:
    """A policy published before tiers were objects and timers were configurable (issue #5) reads as
    the same policy with glossary-level tiers and the default timers and duplicate rules."""
    if all(isinstance(t, Mapping) for t in policy["tiers"]) and "escalation" in policy \
            and all(s.name in policy for s in sections()):
        return dict(policy)
    lifted = dict(policy)
    lifted["tiers"] = [t if isinstance(t, Mapping) else {"code": t, "name": LEVEL_NAMES.get(t, t), "level": t,
                                                          "joint": False, "dispatch_day": None}
                       for t in policy["tiers"]]
    lifted.setdefault("escalation", _Escalation().load({}))
    for section in sections():
        lifted.setdefault(section.name, section.defaults())
    return lifted


class CountyPolicy:
    """Read-only lookups over one published policy version."""

    def __init__(self, policy: Mapping[str, Any], version: int):
        self.doc = _lift(policy)
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

    @cached_property
    def tiers(self) -> list[dict]:
        return list(self.doc["tiers"])

    def tier(self, code: str) -> dict:
        """The tier with this code; KeyError when this policy version has no such tier."""
        found = next((t for t in self.tiers if t["code"] == code), None)
        if found is None:
            raise KeyError(f"tier {code!r} is not in policy version {self.version}")
        return found

    def tiers_from(self, code: str) -> list[dict]:
        """The ladder from `code` upwards; empty when this version has no tier `code`."""
        codes = [t["code"] for t in self.tiers]
        return self.tiers[codes.index(code):] if code in codes else []

    def next_tier(self, code: str) -> dict | None:
        above = self.tiers_from(code)[1:]
        return above[0] if above else None

    @property
    def escalation(self) -> dict:
        return self.doc["escalation"]

    @property
    def notify(self) -> dict:
        return self.doc["notify"]

    def cadre(self, cadre_id: str) -> dict | None:
        return next((c for c in self.doc["cadres"] if c["id"] == cadre_id), None)

    def township_of_unit(self, code: str) -> str | None:
        """The township a unit serves (the supervisor who answers for it), None for county-wide units."""
        unit = self.unit(code)
        for place in (unit or {}).get("covers", []):
            info = self._places.get(place)
            if info is not None:
                return info["township"]
        return None

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
            "tiers": [{"code": t["code"], "name": t["name"], "level": t["level"]} for t in self.tiers],
            "categories": [{"code": c["code"], "key": c["key"], "name": c["name"], "start_tier": c["start_tier"]}
                           for c in self.doc["categories"]],
            "townships": [{"code": t["code"], "name": t["name"],
                           "villages": [{"code": v["code"], "name": v["name"],
                                         "hamlets": [{"code": h["code"], "name": h["name"]} for h in v["hamlets"]]}
                                        for v in t["villages"]]}
                          for t in self.doc["townships"]],
            "units": [{"code": u["code"], "name": u["name"], "tier": u["tier"]} for u in self.doc["units"]],
        }
