"""The admin's page of county policy versions (issue #14 §7): every published version of the
person's county, and what changed between two of them in plain words.

The console computes nothing: the versions and the structured diff are intake's answers
(`GET /api/v1/counties/{county}/policy/versions` and `…/policy/diff?from=&to=`, action
`policy.read`: admins and auditors) to the person's own token; this page only words them — each
change as "added / removed / changed", where (the policy's section and the path inside it, with the
names of the places, units, cadres and categories), and old → new."""
from __future__ import annotations

from typing import Any, Mapping

from services.console import web
from services.console.messages import text

SHOWN_VALUE = 160          # a long value (a whole township) is cut here: the diff names its parts


def value_words(value: Any) -> str:
    """A policy value as a person reads it: `code name` for a named item, lists joined, mappings as
    `key: value` pairs."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        if "name" in value and any(k in value for k in ("code", "id")):
            words = f"{value.get('code') or value.get('id')} {value['name']}"
        else:
            words = "; ".join(f"{k}: {value_words(v)}" for k, v in value.items())
    elif isinstance(value, list):
        words = "、".join(value_words(v) for v in value) or "—"
    else:
        words = str(value)
    return words if len(words) <= SHOWN_VALUE else words[:SHOWN_VALUE - 1] + "…"


def change_words(change: Mapping, lang: str) -> dict:
    """One change of the diff, worded: {kind, where, old, new}."""
    section = change["section"]
    named = text(lang, f"policy.section.{section}")
    where = [named if not named.startswith("policy.section.") else section]
    for step, label in zip(change.get("path", [])[1:], change["labels"][1:]):
        worded = text(lang, f"policy.key.{step}") if step == label else label     # a key, or an item's name
        where.append(label if worded.startswith("policy.key.") else worded)
    return {"kind": change["change"], "kind_words": text(lang, f"policy.change.{change['change']}"),
            "where": " › ".join(where), "old": value_words(change.get("old")) if "old" in change else None,
            "new": value_words(change.get("new")) if "new" in change else None}


class PolicyPages:
    """Mixed into services.console.app.Console (uses api, _require, _client and _error)."""

    def page_policy(self, request):
        session, answer = self._require(request, "policy.read")
        if answer is not None:
            return answer
        county, lang = session.account.county, web.language(request)
        listed = self.api.call("GET", f"/api/v1/counties/{county}/policy/versions", token=session.token,
                               client=self._client(request))
        if not listed.ok:
            return self._error(request, listed.status if listed.status in (403, 404) else 503)
        versions = listed.body["versions"]               # newest first
        chosen = {k: request.args.get(k, "").strip() for k in ("from", "to")}
        if not chosen["to"] and versions:
            chosen["to"] = str(versions[0]["version"])
        if not chosen["from"] and len(versions) > 1:
            chosen["from"] = str(versions[1]["version"])
        errors, compared = {}, None
        if chosen["from"] and chosen["to"]:
            found = self.api.call("GET", f"/api/v1/counties/{county}/policy/diff", token=session.token,
                                  query=chosen, client=self._client(request))
            if found.status == 422:
                for name, reasons in (found.error.get("fields") or {}).items():
                    errors[name if name in ("from", "to") else "to"] = text(lang, "error.invalid",
                                                                             detail="; ".join(reasons))
            elif not found.ok:
                return self._error(request, found.status if found.status in (403, 404) else 503)
            else:
                compared = {**found.body, "changes": [change_words(c, lang) for c in found.body["changes"]],
                            "sections": [change_words({"section": s, "labels": [], "change": "changed"}, lang)["where"]
                                         for s in found.body["sections"]]}
        return web.render(request, "policy.html", status=422 if errors else 200, session=session,
                          versions=versions, chosen=chosen, compared=compared, errors=errors)
