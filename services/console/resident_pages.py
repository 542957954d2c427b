"""The residents' own pages (issue #14 §8), public, no login:

- `/console/online/<county>` — the 民生在线 report form (seed 000: 构建"民生在线"): category, place from the
  published catalogue, what they ask, an optional phone; posted to intake's public door for the
  `online` channel (services/intake/online.py) with the resident's address as X-Forwarded-For (so
  intake's per-address limit counts the resident) and an Idempotency-Key made when the form is shown
  (a double click or a reload registers once and shows the same tracking number and PIN);
- `/console/rate/<token>` — the signed rating link sent with the result (services/notify/rating_link.py):
  the result in plain words and the two 回访 questions the 12345 way (was it actually solved? how
  satisfied?), answered through notify's rating route, which records exactly what an SMS reply
  records. The console never sees the signing secret: notify checks the token.

Both forms carry the pre-login double-submit CSRF token, like the tracking form.
"""
from __future__ import annotations

import uuid

from services.console import web
from services.console.messages import text

ONLINE_FIELDS = ("category", "township", "village", "hamlet", "summary", "phone")
RATINGS = ("satisfied", "basically_satisfied", "unsatisfied")


class ResidentPages:
    # 民生在线 -------------------------------------------------------------------------------------------

    def page_online(self, request, county):
        lang = web.language(request)
        try:
            catalogue = self.catalogue(county)
        except RuntimeError:
            return self._error(request, 404)
        form = request.form if request.method == "POST" else {}
        shown = dict(csrf=web.form_token(request), catalogue=catalogue, county=county, form=form)
        if request.method == "GET":
            return web.render(request, "resident_online.html", idem=str(uuid.uuid4()), **shown)
        idem = form.get("idem") or str(uuid.uuid4())
        if not self._form_csrf_ok(request):
            return web.render(request, "resident_online.html", status=403, error="form.csrf", idem=idem, **shown)
        body, errors = online_body(form, catalogue)
        if not errors:
            sent = self.api.call("POST", f"/api/v1/channels/online/{county}", body=body, client=self._client(request),
                                 headers={"Idempotency-Key": idem})
            if sent.ok:
                return web.render(request, "resident_online_done.html", status=201, registered=sent.body,
                                  phone=bool(body.get("phone")), county=county)
            if sent.status == 429:
                return web.render(request, "resident_online.html", status=429, error="online.too_many", idem=idem,
                                  **shown)
            if sent.status == 404:
                return self._error(request, 404)
            errors = online_errors(sent.error, lang)
            if not errors:
                return self._error(request, 503)
        return web.render(request, "resident_online.html", status=422, errors=errors, idem=idem, **shown)

    # the rating link -----------------------------------------------------------------------------------

    def page_rate(self, request, token):
        lang = web.language(request)
        client = self._client(request)
        path, errors = f"/api/v1/rate/{token}", {}
        if request.method == "POST":
            if not self._form_csrf_ok(request):
                return self._rate_refused(request, 403, "form.csrf")
            errors = {k: "rate.choose" for k, ok in (("solved", request.form.get("solved") in ("yes", "no")),
                                                     ("rating", request.form.get("rating") in RATINGS)) if not ok}
            if not errors:
                sent = self.api.call("POST", path, query={"lang": lang}, client=client,
                                     body={"solved": request.form["solved"] == "yes", "rating": request.form["rating"]})
                if sent.ok:
                    return web.render(request, "resident_rated.html", status=201, view=sent.body, just=True)
                if sent.status == 409:
                    shown = self.api.call("GET", path, query={"lang": lang}, client=client)
                    if shown.ok:
                        return web.render(request, "resident_rated.html", status=409, view=shown.body,
                                          refusal="rate.already" if shown.body["state"] == "answered" else "rate.closed")
                if sent.status != 422:
                    return self._rate_refused(request, sent.status)
                errors = {k: "rate.choose" for k in (sent.error.get("fields") or {}) if k in ("solved", "rating")} \
                    or {"rating": "rate.choose"}
        shown = self.api.call("GET", path, query={"lang": lang}, client=client)
        if not shown.ok:
            return self._rate_refused(request, shown.status)
        if shown.body["state"] != "awaiting":
            return web.render(request, "resident_rated.html", view=shown.body,
                              refusal=None if shown.body["state"] == "answered" else "rate.closed")
        return web.render(request, "resident_rate.html", status=422 if errors else 200,
                          view=shown.body, csrf=web.form_token(request), form=request.form, errors=errors,
                          ratings=RATINGS)

    def _rate_refused(self, request, status: int, key: str | None = None):
        """A link that is not ours (404), expired (410), too many tries (429), or the service down."""
        key = key or {404: "rate.forged", 410: "rate.expired", 429: "rate.too_many"}.get(status, "error.503")
        status = status if status in (403, 404, 410, 429) else 503
        return web.render(request, "resident_refused.html", status=status, message_key=key)


def online_body(form, catalogue) -> tuple[dict, dict]:
    """The form as intake's online door takes it, and the empty required fields (named in words)."""
    errors = {name: "form.required" for name in ("category", "township", "summary")
              if not (form.get(name) or "").strip()}
    category = (form.get("category") or "").strip()
    for c in catalogue["categories"]:       # a name picked or typed counts as its code
        if category in (c["name"], f"{c['code']} {c['name']}"):
            category = c["code"]
    body = {"category": category, "summary": (form.get("summary") or "").strip(),
            **{k: form.get(k).strip() for k in ("township", "village", "hamlet", "phone") if (form.get(k) or "").strip()}}
    return body, errors


def online_errors(error: dict, lang: str) -> dict:
    """Intake's 422 field errors as the form's: each bad field named; a catalogue miss in words."""
    out = {}
    for field, problems in (error.get("fields") or {}).items():
        if field in ("category", "township", "village", "hamlet") and any("is not a" in p for p in problems):
            out[field] = "error.unknown_category" if field == "category" else "error.unknown_place"
        elif field == "phone":
            out[field] = "error.phone"
        else:
            out[field if field in ONLINE_FIELDS else "other"] = text(lang, "error.invalid", detail="; ".join(problems))
    return out
