"""The operator's pages (issue #14 §2): a report registered as the call comes in, through intake's
API with the operator's token, and the receipt slip (tracking number and PIN) for walk-ins."""
from __future__ import annotations

import uuid

from minqing.personal_data import mask_name, mask_phone
from services.console import web
from services.console.messages import text

SIMILAR_SHOWN = 20          # possible duplicates listed before saving, newest first
OPERATOR_CHANNELS = ("hotline", "leader_phone", "service_hall", "field_visit", "market_post", "suggestion_box")


class DeskPages:
    # operator --------------------------------------------------------------------------------------

    def page_report(self, request):
        session, answer = self._require(request, "case.report")
        if answer is not None:
            return answer
        catalogue = self.catalogue(session.account.county)
        form = request.form if request.method == "POST" else {}
        if request.method == "POST" and form.get("action") == "check":
            return self._possible_duplicates(request, session, form, catalogue)
        if request.method == "POST":
            body, errors = self._report_body(session, form, catalogue)
            if not errors:
                sent = self.api.call("POST", "/api/v1/cases", token=session.token, body=body,
                                     client=self._client(request), headers={"Idempotency-Key": form.get("idem", "")})
                if sent.ok:
                    return self._receipt(request, session, body, sent.body, catalogue)
                if sent.status in (401, 403):
                    return self._error(request, 403)
                errors = self._field_errors(sent.error, web.language(request))
                if not errors:
                    return self._error(request, 503)
            return web.render(request, "report.html", status=422, session=session, catalogue=catalogue, form=form,
                              errors=errors, channels=OPERATOR_CHANNELS, idem=form.get("idem") or str(uuid.uuid4()))
        return web.render(request, "report.html", session=session, catalogue=catalogue, form={}, errors={},
                          channels=OPERATOR_CHANNELS, idem=str(uuid.uuid4()))

    def _possible_duplicates(self, request, session, form, catalogue):
        """Before saving (issue #14 §2): the open cases of the chosen category in the chosen township,
        as routing's worklist shows them to this person (an operator sees the county's, a cadre their
        unit's). Nothing is registered; the form comes back as typed, with the list above the button.
        Intake still links a true duplicate (same resident or same spot) to its original when saved."""
        body, _ = self._report_body(session, form, catalogue)
        errors = {}
        if not body["category"]:
            errors["category"] = "form.required"
        if not body["location"].get("township"):
            errors["township"] = "form.required"
        similar = None
        if not errors:
            listed = self.api.call("GET", "/api/v1/worklist", token=session.token, client=self._client(request),
                                   query={"category": body["category"], "township": body["location"]["township"],
                                          "limit": 500})
            if listed.status in (401, 403):
                return self._error(request, 403)
            if listed.status == 422:
                errors = {"category": "error.unknown_category"}
            elif not listed.ok:
                return self._error(request, 503)
            else:
                # newest first (a county's tracking numbers sort by day, then by count): the worklist
                # orders by deadline, but the caller most likely means a matter reported lately
                cases = sorted(listed.body.get("cases", []), key=lambda c: c.get("tracking_no") or "", reverse=True)
                similar = cases[:SIMILAR_SHOWN]
        return web.render(request, "report.html", status=422 if errors else 200, session=session,
                          catalogue=catalogue, form=form, errors=errors, channels=OPERATOR_CHANNELS,
                          idem=form.get("idem") or str(uuid.uuid4()), similar=similar,
                          similar_total=len(listed.body.get("cases", [])) if similar is not None else 0)

    @staticmethod
    def _report_body(session, form, catalogue) -> tuple[dict, dict]:
        lang_free = {}
        required = ("channel", "category", "township", "summary")
        for name in required:
            if not (form.get(name) or "").strip():
                lang_free[name] = "form.required"
        name, phone = (form.get("name") or "").strip(), (form.get("phone") or "").strip()
        if form.get("channel") != "suggestion_box":
            for field, value in (("name", name), ("phone", phone)):
                if not value:
                    lang_free[field] = "form.required"
        category = (form.get("category") or "").strip()
        for c in catalogue["categories"]:       # a name picked or typed counts as its code
            if category in (c["name"], f"{c['code']} {c['name']}"):
                category = c["code"]
        body = {"county": session.account.county, "channel": form.get("channel"), "category": category,
                "summary": (form.get("summary") or "").strip(), "urgency": form.get("urgency") or "normal",
                "location": {k: form.get(k) for k in ("township", "village", "hamlet") if form.get(k)}}
        if name or phone:
            body["reporter"] = {"name": name, "phone": phone}
        return body, lang_free

    @staticmethod
    def _field_errors(error: dict, lang: str) -> dict:
        """The API's 422 field errors as the form's: field name → message key or words."""
        out = {}
        for field, problems in (error.get("fields") or {}).items():
            name = field.removeprefix("location.").removeprefix("reporter.")
            if error.get("code") == "unknown_category":
                out["category"] = "error.unknown_category"
            elif error.get("code") == "unknown_place":
                out[name] = "error.unknown_place"
            else:
                out[name if name in ("channel", "category", "township", "village", "hamlet", "summary", "name",
                                     "phone", "urgency") else "other"] = text(lang, "error.invalid",
                                                                              detail="; ".join(problems))
        return out

    def _receipt(self, request, session, body, registered, catalogue):
        category = next((c["name"] for c in catalogue["categories"] if c["code"] == body["category"]), body["category"])
        reporter = body.get("reporter")
        return web.render(request, "receipt.html", status=201, session=session, registered=registered,
                          category=category, now=self.clock.now().isoformat(),
                          reporter=f"{mask_name(reporter['name'])} {mask_phone(reporter['phone'])}" if reporter else "—")
