"""A county's published policy versions and what changed between two of them (issue #14 §7, the
admin's "county policy versions").

The versions are the `policy.published` events of stream `county-<id>` (minqing.county.publish):
the ledger holds every version whole, so listing them and comparing two needs no table of its own
and answers the same after any rebuild. Served by intake, which serves the county's catalogue.

The diff is structural, so a person reads "cadre lj-c002's unit: A → B" rather than two YAML files:

- mappings are compared key by key;
- lists of items that carry an identity — `code` (places, units, tiers, categories), `id` (cadres)
  or `level` (the pressure ladder) — are matched by it, so inserting one cadre is one addition, not
  a change of every cadre after it; an item's `name` is carried along as its label;
- lists of plain values (holidays, a unit's `covers`) report each value added or removed;
- anything else that differs is one change, old → new.

Each change names its section (the policy's top-level key: `cadres`, `escalation`, `notify`, …),
its path inside the policy, a label per path step and the old and new values.
"""
from __future__ import annotations

from typing import Any, Mapping

from marshmallow import Schema, fields, validate

from minqing.ledger import Ledger, RecordedEvent

IDENTITIES = ("code", "id", "level")      # the first one every item of both lists carries, unique, matches


class DiffQuery(Schema):
    from_ = fields.Integer(required=True, data_key="from", strict=False, validate=validate.Range(min=1))
    to = fields.Integer(required=True, strict=False, validate=validate.Range(min=1))


class VersionsOut(Schema):
    county = fields.String(required=True)
    timezone = fields.String(required=True)
    versions = fields.List(fields.Dict(), required=True)


class DiffOut(Schema):
    county = fields.String(required=True)
    timezone = fields.String(required=True)
    from_ = fields.Dict(required=True, data_key="from")
    to = fields.Dict(required=True)
    sections = fields.List(fields.String(), required=True)
    changes = fields.List(fields.Dict(), required=True)


def published(ledger: Ledger, county: str) -> list[RecordedEvent]:
    """The county's `policy.published` events, oldest first."""
    return [e for e in ledger.read_stream(f"county-{county}") if e.type == "policy.published"]


def describe(event: RecordedEvent) -> dict:
    """One version as the list shows it (no document: the diff shows what matters)."""
    return {"version": event.data["version"], "digest": event.data["digest"], "position": event.position,
            "published_at": event.recorded_at, "actor": event.metadata.actor,
            "name": (event.data.get("policy") or {}).get("name")}


def _identity(old: list, new: list) -> str | None:
    items = old + new
    if not items or not all(isinstance(i, Mapping) for i in items):
        return None
    for key in IDENTITIES:
        if all(key in i for i in items) and all(len({str(i[key]) for i in side}) == len(side) for side in (old, new)):
            return key
    return None


def _label(item: Any, key: str) -> str:
    name = item.get("name") if isinstance(item, Mapping) else None
    return f"{item[key]} {name}" if name and name != item[key] else str(item[key])


def diff(old: Any, new: Any, path: tuple = (), labels: tuple = ()) -> list[dict]:
    """Every change from `old` to `new` (module docstring), in the order of the newer document."""
    def change(kind: str, at: tuple, shown: tuple, **values) -> dict:
        return {"section": at[0] if at else "", "path": list(at), "labels": list(shown), "change": kind, **values}

    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[dict] = []
        for key in list(new) + [k for k in old if k not in new]:
            at, shown = path + (str(key),), labels + (str(key),)
            if key not in old:
                out.append(change("added", at, shown, new=new[key]))
            elif key not in new:
                out.append(change("removed", at, shown, old=old[key]))
            else:
                out += diff(old[key], new[key], at, shown)
        return out
    if isinstance(old, list) and isinstance(new, list):
        key = _identity(old, new)
        if key is not None:
            before = {str(i[key]): i for i in old}
            after = {str(i[key]): i for i in new}
            out = []
            for ident in list(after) + [i for i in before if i not in after]:
                item = after.get(ident, before.get(ident))
                at, shown = path + (ident,), labels + (_label(item, key),)
                if ident not in before:
                    out.append(change("added", at, shown, new=item))
                elif ident not in after:
                    out.append(change("removed", at, shown, old=item))
                else:
                    out += diff(before[ident], after[ident], at, shown)
            return out
        if all(not isinstance(v, (Mapping, list)) for v in old + new):
            gone = [v for v in old if v not in new]
            came = [v for v in new if v not in old]
            return ([change("removed", path, labels, old=v) for v in gone] +
                    [change("added", path, labels, new=v) for v in came])
    if old != new:
        return [change("changed", path, labels, old=old, new=new)]
    return []


def compare(events: list[RecordedEvent], older: int, newer: int) -> dict:
    """{from, to, sections, changes} between two published versions; KeyError with the list of the
    query fields ("from", "to") whose version is not published."""
    by_version = {e.data["version"]: e for e in events}
    unknown = [name for name, version in (("from", older), ("to", newer)) if version not in by_version]
    if unknown:
        raise KeyError(unknown)
    a, b = by_version[older], by_version[newer]
    changes = diff(a.data["policy"], b.data["policy"])
    return {"from": describe(a), "to": describe(b), "changes": changes,
            "sections": list(dict.fromkeys(c["section"] for c in changes))}
