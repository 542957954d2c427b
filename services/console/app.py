"""The console (issue #14): server-rendered pages for operators, cadres and residents, served by
Minqing itself on its own port behind the gateway (`/console/…`, `/static/…`).

Every read and action goes through the services' own HTTP API with the session's token (see
services/console/sessions.py), so the console adds no authorisation rule of its own beyond
deciding which pages a role is offered; what a person may see or do is decided where the API decides it.
"""
from __future__ import annotations

import hmac
import json
import logging
import time

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from minqing import access
from minqing import config as config_mod
from minqing.clock import SYSTEM_CLOCK, Clock, parse_instant
from services.console import accounts, sessions, web
from services.console.api import Api
from services.console.admin_pages import AdminPages
from services.console.assessment_pages import AssessmentPages
from services.console.audit_pages import AuditPages
from services.console.board_pages import LEVELS, BoardPages
from services.console.desk_pages import DeskPages
from services.console.field_pages import FieldPages
from services.console.messages import text
from services.console.parked_pages import ParkedPages
from services.console.policy_pages import PolicyPages
from services.console.totp_pages import TotpPages
from services.console.resident_pages import ResidentPages

log = logging.getLogger("minqing.console")
STATIC = web.HERE / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".webmanifest": "application/manifest+json",
                ".svg": "image/svg+xml", ".png": "image/png"}
ACTIONS = {"accept": "/accept", "note": "/notes", "resolve": "/resolve",      # console action → API path
           "supervise": "/supervise", "transfer": "/transfer", "escalate": "/escalate", "joint": "/joint",
           "return": "/return", "reply": "/notes"}
# console action → the access.POLICY action the API checks (a written reply is a note with reply_to)
POLICY_ACTION = {"reply": "case.note"}
# console action → (API body field → the form's field name, as the case page names it; required ones)
FORMS = {"accept": ({"note": "accept_note"}, ()), "note": ({"note": "note"}, ("note",)),
         "resolve": ({"resolution": "resolution"}, ("resolution",)),
         "supervise": ({"level": "level", "note": "supervise_note"}, ("level", "note")),
         "transfer": ({"to_unit": "to_unit", "reason": "reason"}, ("to_unit", "reason")),
         "escalate": ({"reason": "escalate_reason"}, ("reason",)),
         "return": ({"reason": "return_reason"}, ("reason",)),
         "joint": ({"co_units": "co_units", "reason": "joint_reason"}, ()),
         "reply": ({"note": "reply_note", "reply_to": "reply_note"}, ("note",))}
HOME = {"operator": "/console/report", "cadre": "/console/worklist", "supervisor": "/console/board",
        "auditor": "/console/audit", "admin": "/console/admin/accounts"}

URLS = Map([
    Rule("/console/", endpoint="home"),
    Rule("/console/login", endpoint="login", methods=["GET", "POST"]),
    Rule("/console/logout", endpoint="logout", methods=["POST"]),
    Rule("/console/password", endpoint="password", methods=["GET", "POST"]),
    Rule("/console/report", endpoint="report", methods=["GET", "POST"]),
    Rule("/console/worklist", endpoint="worklist"),
    Rule("/console/cases/<case_id>", endpoint="case"),
    Rule("/console/board", endpoint="board"),
    Rule("/console/agenda", endpoint="agenda"),
    Rule("/console/cases/<case_id>/<any(accept, note, resolve, supervise, transfer, escalate, joint, return, reply):action>",
         endpoint="act",
         methods=["POST"]),
    Rule("/console/track", endpoint="track", methods=["GET", "POST"]),
    Rule("/console/assessment", endpoint="assessment"),
    Rule("/console/assessment.csv", endpoint="assessment_csv"),
    Rule("/console/assessment/rankings", endpoint="rankings"),
    Rule("/console/assessment/explain", endpoint="explain"),
    Rule("/console/audit", endpoint="audit", methods=["GET", "POST"]),
    Rule("/console/audit/access", endpoint="access_log"),
    Rule("/console/admin/accounts", endpoint="accounts", methods=["GET", "POST"]),
    Rule("/console/admin/subscriptions", endpoint="subscriptions", methods=["GET", "POST"]),
    Rule("/console/admin/tokens", endpoint="tokens", methods=["GET", "POST"]),
    # admin: policy versions, parked events; the optional second factor (helper `admin`, issue #14 §1, §7)
    Rule("/console/admin/policy", endpoint="policy"),
    Rule("/console/admin/parked", endpoint="parked", methods=["GET", "POST"]),
    Rule("/console/totp", endpoint="totp", methods=["GET", "POST"]),
    Rule("/console/login/code", endpoint="login_code", methods=["GET", "POST"]),
    # residents: the 民生在线 form and the signed rating link (services/console/resident_pages.py)
    Rule("/console/online/<county>", endpoint="online", methods=["GET", "POST"]),
    Rule("/console/rate/<token>", endpoint="rate", methods=["GET", "POST"]),
    # field capture without a network, live worklists (services/console/field_pages.py)
    Rule("/console/field/", endpoint="field", methods=["GET", "POST"]),
    Rule("/console/field/sw.js", endpoint="field_sw"),
    Rule("/console/field/token", endpoint="field_token"),
    Rule("/console/field/sync", endpoint="field_sync", methods=["POST"]),
    Rule("/console/live/<any(worklist, board):view>", endpoint="live"),
    Rule("/static/<name>", endpoint="static"),
    Rule("/health", endpoint="health"),
])


class Console(DeskPages, BoardPages, AssessmentPages, AuditPages, AdminPages, PolicyPages, ParkedPages, TotpPages,
              ResidentPages, FieldPages):
    def __init__(self, engine, api: Api, clock: Clock = SYSTEM_CLOCK):
        self.engine, self.api, self.clock = engine, api, clock
        self._catalogues: dict[str, tuple[float, dict]] = {}

    # ---- plumbing ---------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_form_memory_size = 64 * 1024
        try:
            endpoint, values = URLS.bind_to_environ(environ).match()
            response = getattr(self, "page_" + endpoint)(request, **values)
        except HTTPException as exc:
            response = self._error(request, exc.code or 500) if exc.code in (403, 404, 405) else exc.get_response()
        except Exception:
            log.exception("console page failed")
            response = self._error(request, 503)
        web.keep_form_token(response, request)
        return web.secure(response, request)(environ, start_response)

    def _error(self, request, status: int) -> Response:
        key = {403: "error.403", 404: "error.404"}.get(status, "error.503")
        return web.render(request, "error.html", status=status, message_key=key, session=None)

    def _session(self, request) -> sessions.Session | None:
        return sessions.load(self.engine, request.cookies.get(web.SESSION_COOKIE), self.clock)

    def _require(self, request, action: str | None = None):
        """The session, or an answer: to the login page, to the password change, or 403."""
        session = self._session(request)
        if session is None:
            return None, redirect("/console/login", 303)
        if session.account.must_change_password and request.path != "/console/password":
            return None, redirect("/console/password", 303)
        if action is not None and session.account.role not in access.POLICY[action]:
            return None, self._error(request, 403)
        if request.method == "POST" and not session.csrf_ok(request.form.get("csrf")):
            return None, web.render(request, "error.html", status=403, message_key="form.csrf", session=session)
        return session, None

    @staticmethod
    def _client(request) -> str:
        """The person's address (the gateway's X-Forwarded-For, trusted only with its proof)."""
        return access.client_key(request, config_mod.gateway_secret())

    def _form_csrf_ok(self, request) -> bool:
        cookie, sent = request.cookies.get(web.FORM_COOKIE), request.form.get("csrf")
        return bool(cookie and sent) and hmac.compare_digest(cookie, sent)

    def catalogue(self, county: str) -> dict:
        cached = self._catalogues.get(county)
        if cached and time.monotonic() - cached[0] < 60:
            return cached[1]
        answer = self.api.call("GET", f"/api/v1/counties/{county}")
        if not answer.ok:
            raise RuntimeError(f"the catalogue of {county} is not available ({answer.status})")
        self._catalogues[county] = (time.monotonic(), answer.body)
        return answer.body

    # ---- pages ------------------------------------------------------------------------------------

    def page_health(self, request):
        return Response(json.dumps({"service": "console", "status": "ok"}), mimetype="application/json")

    def page_static(self, request, name):
        path = STATIC / name
        if path.suffix not in STATIC_TYPES or path.parent != STATIC or not path.is_file():
            raise NotFound()
        response = Response(path.read_bytes(), mimetype=STATIC_TYPES[path.suffix])
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    def page_home(self, request):
        session = self._session(request)
        if session is None:
            return redirect("/console/login", 303)
        return redirect(HOME.get(session.account.role, "/console/track"), 303)

    def page_login(self, request):
        error = None
        if request.method == "POST":
            if not self._form_csrf_ok(request):
                return web.render(request, "login.html", status=403, error="form.csrf", csrf=web.form_token(request))
            try:
                account = accounts.login(self.engine, request.form.get("username", "").strip(),
                                         request.form.get("password", ""), self.clock)
                if self.needs_code(account):      # the second factor (services/console/totp_pages.py)
                    return self.ask_code(request, account)
            except accounts.LoginRefused as refused:
                lang = web.language(request)
                error = (text(lang, "login.locked", minutes=refused.minutes) if refused.reason == "locked"
                         else text(lang, "login.wrong"))
                return web.render(request, "login.html", status=401, error_text=error, csrf=web.form_token(request),
                                  username=request.form.get("username", ""))
            response = redirect("/console/password" if account.must_change_password
                                else HOME.get(account.role, "/console/track"), 303)
            web.set_session_cookie(response, request, sessions.open_session(self.engine, account, self.clock))
            return response
        notice = "login.logged_out" if request.args.get("bye") else None
        return web.render(request, "login.html", csrf=web.form_token(request), notice=notice)

    def page_logout(self, request):
        session = self._session(request)
        if session is not None and session.csrf_ok(request.form.get("csrf")):
            sessions.end(self.engine, session.token_id, self.clock)
        response = redirect("/console/login?bye=1", 303)
        web.set_session_cookie(response, request, None)
        return response

    def page_password(self, request):
        session, answer = self._require(request)
        if answer is not None:
            return answer
        errors = {}
        if request.method == "POST":
            new = request.form.get("password", "")
            if new != request.form.get("repeat", ""):
                errors["repeat"] = "password.mismatch"
            else:
                try:
                    accounts.change_password(self.engine, session.account.account_id,
                                             request.form.get("current", ""), new)
                    return redirect(HOME.get(session.account.role, "/console/track") + "?changed=1", 303)
                except accounts.AccountError as exc:
                    errors[exc.field] = "error.current" if exc.field == "current" else "error.password"
        return web.render(request, "password.html", status=422 if errors else 200, session=session, errors=errors)

    # cadre -----------------------------------------------------------------------------------------

    def page_worklist(self, request):
        session, answer = self._require(request, "worklist.read")
        if answer is not None:
            return answer
        listed = self.api.call("GET", "/api/v1/worklist", token=session.token, client=self._client(request))
        if not listed.ok:
            return self._error(request, listed.status if listed.status in (403, 404) else 503)
        lang, now = web.language(request), self.clock.now()
        rows = []
        for case in listed.body["cases"]:       # the deadline that counts now: acceptance while assigned
            kind = "response" if case["status"] == "assigned" and case["response_due"] else "resolution"
            left, over = web.time_left(case[f"{kind}_due"], now, lang)
            rows.append({**case, "kind": kind, "left": left, "over": over or case["overdue"]})
        return web.render(request, "worklist.html", session=session, rows=rows, total=listed.body["total"],
                          changed=bool(request.args.get("changed")))

    def page_case(self, request, case_id, status: int = 200, errors=None, conflict: str | None = None):
        session, answer = self._require(request, "case.read")
        if answer is not None:
            return answer
        lang = web.language(request)
        view = self.api.call("GET", f"/api/v1/cases/{case_id}", token=session.token, client=self._client(request))
        if not view.ok:
            return self._error(request, view.status if view.status in (403, 404) else 503)
        routing = self.api.call("GET", f"/api/v1/cases/{case_id}/routing", token=session.token,
                                query={"lang": lang}, client=self._client(request))
        explained = routing.body if routing.ok else {"decisions": [], "current": None}
        words = {d["position"]: d for d in explained["decisions"]}
        timeline = [{**entry, "words": (words.get(entry["position"]) or {}).get("words")} for entry in view.body["history"]]
        reads = self.case_reads(session, request, case_id)       # an auditor's view: every read merged in
        if reads:
            timeline = sorted(timeline + [{"at": r["at"], "read": r} for r in reads], key=lambda e: parse_instant(e["at"]))
        assignment = view.body.get("assignment") or {}
        holds = session.account.role == "cadre" and assignment.get("unit") == session.account.unit
        supervisor = session.account.role == "supervisor" and view.body.get("status") in ("assigned", "accepted",
                                                                                            "returned")
        try:
            catalogue = self.catalogue(session.account.county)
        except RuntimeError:            # the page still reads without names (codes shown instead)
            catalogue = {"categories": [], "units": []}
        units = catalogue["units"] if supervisor or holds else []
        category = next((f"{c['code']} {c['name']}" for c in catalogue["categories"]
                         if c["code"] == view.body.get("category")), view.body.get("category"))
        return web.render(request, "case.html", status=status, session=session, case=view.body, timeline=timeline,
                          routing=explained, holds=holds, errors=errors or {}, conflict=conflict,
                          supervisor=supervisor, units=units, levels=LEVELS, form=request.form, category=category,
                          reads=bool(reads), reply=reply_owed(view.body["history"]),
                          done=request.args.get("done") if request.args.get("done") in ACTIONS else None,
                          left=web.time_left(assignment.get("resolution_due"), self.clock.now(), lang))

    def page_act(self, request, case_id, action):
        session, answer = self._require(request, POLICY_ACTION.get(action, f"case.{action}"))
        if answer is not None:
            return answer
        form, lang = request.form, web.language(request)
        if action == "accept":
            body = {"note": form["note"].strip()} if form.get("note", "").strip() else {}
        elif action == "note":
            body = {"note": form.get("note", "")}
        elif action == "resolve":
            body = {"resolution": form.get("resolution", ""), "on_site": form.get("on_site") == "1"}
        elif action == "supervise":
            body = {"level": form.get("level", ""), "note": form.get("note", "")}
        elif action in ("escalate", "return"):
            body = {"reason": form.get("reason", "")}
        elif action == "joint":          # no unit ticked: the category's co-departments (the API's default)
            body = {k: v for k, v in (("co_units", form.getlist("co_units")), ("reason", form.get("reason", "").strip()))
                    if v}
        elif action == "reply":
            body = {"note": form.get("note", ""), **({"reply_to": form["reply_to"]} if form.get("reply_to") else {})}
        else:
            body = {"to_unit": form.get("to_unit", ""), "reason": form.get("reason", "")}
        names, required = FORMS[action]
        missing = {f"{action}.{names[name]}": "form.required" for name in required
                   if not str(body.get(name) or "").strip()}
        if action == "supervise" and body["level"] and body["level"] not in LEVELS:
            missing["supervise.level"] = "form.choose"
        if missing:
            return self.page_case(request, case_id, status=422, errors=missing)
        done = self.api.call("POST", f"/api/v1/cases/{case_id}{ACTIONS[action]}", token=session.token, body=body,
                             client=self._client(request))
        if done.ok:
            return redirect(f"/console/cases/{case_id}?done={action}", 303)
        if done.status == 409:
            return self.page_case(request, case_id, status=409, conflict=self._conflict_words(done.error, case_id,
                                                                                               session, lang))
        if done.status == 422:
            fields_ = done.error.get("fields") or {}
            named = {f"{action}.{names[name]}": text(lang, "error.invalid", detail="; ".join(v))
                     for name, v in fields_.items() if name in names}
            if not named:
                problems = "; ".join("; ".join(v) for v in fields_.values()) or done.error.get("message", "")
                first = next(iter(names.values()))
                named = {f"{action}.{first}": text(lang, "error.invalid", detail=problems)}
            return self.page_case(request, case_id, status=422, errors=named)
        return self._error(request, done.status if done.status in (403, 404) else 503)

    def _conflict_words(self, error: dict, case_id: str, session, lang: str) -> str:
        code = error.get("code")
        if code in ("not_holder", "already_accepted", "conflict", "pressure_only_rises", "top_tier", "already_joint",
                    "no_reply_owed", "no_unit"):
            return text(lang, f"conflict.{code}")
        if code == "not_applicable":
            view = self.api.call("GET", f"/api/v1/cases/{case_id}", token=session.token)
            status = (view.body or {}).get("status", "")
            return text(lang, "conflict.not_applicable", status=text(lang, f"status.{status}"))
        return text(lang, "conflict.other", message=error.get("message", ""))

    # resident --------------------------------------------------------------------------------------

    def page_track(self, request):
        lang = web.language(request)
        if request.method == "GET":
            return web.render(request, "track.html", csrf=web.form_token(request), form={})
        form = request.form
        if not self._form_csrf_ok(request):
            return web.render(request, "track.html", status=403, csrf=web.form_token(request), form=form,
                              error="form.csrf")
        number, pin = form.get("tracking_no", "").strip().upper(), form.get("pin", "").strip()
        errors = {k: "form.required" for k, v in (("tracking_no", number), ("pin", pin)) if not v}
        if errors:
            return web.render(request, "track.html", status=422, csrf=web.form_token(request), form=form, errors=errors)
        found = self.api.call("GET", f"/api/v1/track/{number}", query={"lang": lang}, client=self._client(request),
                              headers={"X-Minqing-Pin": pin})
        if found.status == 429:
            wait = "".join(ch for ch in " ".join((found.error.get("fields") or {}).get("pin", ["60"])) if ch.isdigit())
            return web.render(request, "track.html", status=429, csrf=web.form_token(request), form=form,
                              error_text=text(lang, "track.locked", seconds=wait or "60"))
        if not found.ok:
            return web.render(request, "track.html", status=404, csrf=web.form_token(request), form=form,
                              error="track.not_found")
        return web.render(request, "tracked.html", case=found.body)


def reply_owed(history: list[dict]) -> dict | None:
    """The written reply a 督办 or 挂牌督办 asks of the holder (its level and due time), as the case's
    history shows it: the latest such supervision with no reply noted after it. The API decides in
    the end (a reply nobody owes is its 409 `no_reply_owed`, explained in words)."""
    owed = None
    for step in history:
        what = step.get("what") or {}
        if step["type"] == "case.supervised" and what.get("level") in ("supervise", "listed") and what.get("reply_due"):
            owed = {"level": what["level"], "due": what["reply_due"]}
        elif step["type"] == "case.progress_noted" and what.get("reply_to"):
            owed = None
    return owed


def main_app(settings) -> Console:
    from minqing.db import make_engine
    from minqing.schema import require_current
    engine = make_engine(settings.database_url)
    require_current(engine, "the console")     # tables come from `minqing db upgrade`
    return Console(engine, Api(settings))

