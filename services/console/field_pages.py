"""Field capture without a network, and live worklists (issue #14 §9 and §10).

**Field capture** (seeds 000 民情下访 and 003 便民服务岗: a cadre in a hamlet or at a market-day post,
often with no signal). `/console/field/` is a phone page a cadre installs (a web app manifest, icons
served here) and opens offline (a service worker at `/console/field/sw.js`, whose scope is the page's
folder, keeps the page, its script and style). A report or a field visit typed there is kept on the
phone (localStorage) with the time it was captured and an idempotency key made at capture; when the
network returns, static/field.js posts each one to `POST /console/field/sync` (session cookie plus the
session's CSRF token in `X-CSRF-Token`), which registers it through the services' API:

- a report: `POST /api/v1/cases` with `Idempotency-Key: <the capture's key>`, the channel (民情下访 or
  便民服务岗, intake's offline channels), `reported_at` = the capture time and `paper_form_ref` =
  `field-capture:<key>` (intake asks offline channels that give an earlier time for the form they
  came from; the capture's key is that form). A replay after a lost answer is intake's replay: the
  same tracking number, one case (the key is the cadre's own: `cadre:<id>` scope, any session).
- a field visit: `POST /api/v1/visits` with the county's local day of the capture; assessment makes
  the visit's event id from (cadre, day, hamlet), so a replay is the same visit.

The capture time is the phone's clock, so the console bounds it: not older than CAPTURE_WINDOW (an
older paper-like record goes to the desk with its paper form), and not ahead of the server's clock —
up to CLOCK_SKEW ahead is a phone clock running fast, answered 425 "try again later" (the body sent
must not change between attempts, or intake would see another request under the same key); beyond
that the entry is refused, naming the field. Without JavaScript the same page is a plain form that
registers at once (no capture time: the report is taken now).

**Live updates.** The worklist and the board load static/live.js, which polls
`GET /console/live/<worklist|board>?after=<position>`: the ledger's head position (one row, the
kernel's `ledger_head`) answers at once when nothing was appended since; when the ledger moved, the
console reads the person's worklist through the API with their own token and answers a digest of
it. When the digest changes, the script fetches the page again and swaps its main part. Polling,
not server-sent events: the gateway buffers each answer whole (minqing/shell/gateway.py), and a
short poll that usually costs one indexed row read serves a county's few hundred cadres.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from werkzeug.utils import redirect
from werkzeug.wrappers import Response

from minqing.clock import isoformat, parse_instant
from services.console import web
from services.console.messages import text

CAPTURE_WINDOW = timedelta(days=7)     # an entry older than this goes to the desk with its paper form
CLOCK_SKEW = timedelta(minutes=10)     # a phone clock this far ahead is waited for, not refused
FIELD_CHANNELS = ("field_visit", "market_post")        # 民情下访, 便民服务岗 (intake's OFFLINE_CHANNELS)
KEY = re.compile(r"^[A-Za-z0-9-]{16,64}$")
DONE = re.compile(r"^(visit|[A-Z]{1,8}-\d{8}-\d{4,6})$")      # what the page confirms: a tracking number
LIVE_VIEWS = {"worklist": ("worklist.read", {}), "board": ("case.supervise", {"limit": 500})}
SW = web.HERE / "static" / "field-sw.js"


class TooEarly(Exception):
    """The capture time is a little ahead of the server's clock: try again once it has passed."""

    def __init__(self, seconds: int):
        self.seconds = seconds


def capture_time(value, now: datetime) -> datetime:
    """The capture's original time, bounded: ValueError (with why) when it is not a time, older than
    CAPTURE_WINDOW or more than CLOCK_SKEW ahead; TooEarly when it is ahead by less."""
    try:
        at = parse_instant(str(value))
    except (TypeError, ValueError):
        raise ValueError("capture.bad_time")
    if at < now - CAPTURE_WINDOW:
        raise ValueError("capture.too_old")
    if at > now + CLOCK_SKEW:
        raise ValueError("capture.future")
    if at > now:
        raise TooEarly(int((at - now).total_seconds()) + 1)
    return at


def visit_body(entry: dict, captured: datetime) -> tuple[dict, dict]:
    """The visit as assessment's API takes it, and the form errors (field → message key)."""
    errors = {}
    hamlet = str(entry.get("hamlet") or "").strip()
    if not hamlet:
        errors["visit_hamlet"] = "form.required"
    try:
        households = int(str(entry.get("households", "")).strip())
        if not 0 <= households <= 500:
            raise ValueError
    except ValueError:
        errors["households"] = "capture.households"
        households = 0
    day = captured.astimezone(web.ZONE).date().isoformat()   # the county's day of the visit, not the phone's
    return {"day": day, "hamlet": hamlet, "households": households}, errors


def worklist_digest(cases: list[dict], total: int) -> str:
    """What a person's worklist or board shows, in a few bytes: changes when a case arrives, leaves,
    changes status, holder or deadlines, or turns overdue."""
    keys = ("case_id", "status", "unit", "cadre", "pressure", "overdue", "response_due", "resolution_due", "reply_due")
    rows = sorted(json.dumps([c.get(k) for k in keys]) for c in cases)
    return hashlib.sha256(f"{total}|{'|'.join(rows)}".encode()).hexdigest()[:20]


def _json(status: int, body: dict, headers: dict | None = None) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json",
                        headers=headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


class FieldPages:
    """Mixed into services.console.app.Console. The field pages are a cadre's alone: `visit.log` (field
    visits are a cadre's own), and reports through `case.report`, which cadres hold."""

    # cadre in the field ------------------------------------------------------------------------------

    def page_field(self, request):
        session, answer = self._require(request, "visit.log")
        if answer is not None:
            return answer
        catalogue = self.catalogue(session.account.county)
        done, errors, status, kind = None, {}, 200, None
        if request.method == "POST":       # without JavaScript: registered now, as at the desk
            kind = "visit" if request.form.get("kind") == "visit" else "report"
            entry = {**request.form.to_dict(), "kind": kind, "key": request.form.get("key", ""),
                     "captured_at": None}
            status, result = self._register_capture(request, session, entry, catalogue)
            if status == 201:
                return redirect("/console/field/?done=" + result.get("tracking_no", "visit"), 303)
            if status == 403:
                return self._error(request, 403)
            errors = result.get("errors") or {"other": "error.503"}
        done = request.args.get("done") if DONE.match(request.args.get("done", "")) else None
        return web.render(request, "field.html", status=status, session=session, catalogue=catalogue, errors=errors,
                          form=request.form if request.method == "POST" else {}, kind=kind, done=done,
                          channels=FIELD_CHANNELS, key=request.form.get("key") or str(uuid.uuid4()))

    def page_field_sw(self, request):
        """The service worker, from the page's own folder so that its scope covers the page."""
        response = Response(SW.read_bytes(), mimetype="text/javascript")
        response.headers["Cache-Control"] = "no-cache"
        return response

    def page_field_token(self, request):
        """The session's CSRF token and username for the page's script, read just before it syncs (the
        page itself may come from the phone's cache, from an older session)."""
        session, answer = self._require(request, "visit.log")
        if answer is not None:
            return answer
        return _json(200, {"user": session.account.username, "csrf": session.csrf})

    def page_field_sync(self, request):
        """One captured entry (JSON), registered through the API with its key and original time. Not a
        form: the CSRF token comes in X-CSRF-Token, and a lost session is 401 for the script to say so."""
        lang = web.language(request)
        session = self._session(request)
        if session is None or session.account.must_change_password:
            return _json(401, {"error": "login", "message": text(lang, "capture.login")})
        if session.account.role != "cadre":
            return _json(403, {"error": "role", "message": text(lang, "error.403")})
        if not session.csrf_ok(request.headers.get("X-CSRF-Token")):
            return _json(403, {"error": "csrf", "message": text(lang, "form.csrf")})
        entry = None
        if (request.content_length or 0) <= 64 * 1024:
            try:
                entry = json.loads(request.get_data(cache=False, as_text=True) or "null")
            except ValueError:
                pass
        if not isinstance(entry, dict):
            return _json(400, {"errors": {"other": text(web.language(request), "capture.not_json")}})
        catalogue = self.catalogue(session.account.county)
        status, result = self._register_capture(request, session, entry, catalogue)
        if "errors" in result:
            result["errors"] = {f: text(lang, m) for f, m in result["errors"].items()}
        headers = {"Retry-After": str(result["retry_after"])} if "retry_after" in result else None
        return _json(status, result, headers)

    def _register_capture(self, request, session, entry: dict, catalogue: dict) -> tuple[int, dict]:
        """(status, answer) for one entry: 201 with the tracking number (or the visit), 422 with the
        form's errors (field → message key), 425 with retry_after, or the API's failure as 503/403."""
        key = str(entry.get("key") or "")
        if not KEY.match(key):
            return 422, {"errors": {"other": "capture.bad_key"}}
        now = self.clock.now()
        captured = None
        if entry.get("captured_at") is not None:
            try:
                captured = capture_time(entry["captured_at"], now)
            except TooEarly as early:
                return 425, {"retry_after": early.seconds}
            except ValueError as bad:
                return 422, {"errors": {"captured_at": str(bad)}}
        if entry.get("kind") == "visit":
            body, errors = visit_body(entry, captured or now)
            if errors:
                return 422, {"errors": errors}
            sent = self.api.call("POST", "/api/v1/visits", token=session.token, body=body,
                                 client=self._client(request))
            if sent.ok:
                return 201, {"key": key, "kind": "visit", "day": body["day"], "hamlet": body["hamlet"]}
            if sent.status == 422:
                fields_ = sent.error.get("fields") or {}
                named = {{"hamlet": "visit_hamlet"}.get(f, f if f in ("day", "households") else "other"):
                         text(web.language(request), "error.invalid", detail="; ".join(map(str, v)))
                         for f, v in fields_.items()}
                return 422, {"errors": named or {"other": "error.503"}}
            if sent.status == 409:       # the same cadre, day and hamlet with other households
                return 422, {"errors": {"households": "capture.visit_conflict"}}
            return (403 if sent.status in (401, 403) else 503), {"error": sent.status}
        form = {k: str(v) for k, v in entry.items() if isinstance(v, (str, int))}
        body, errors = self._report_body(session, form, catalogue)
        if body.get("channel") not in FIELD_CHANNELS:
            errors["channel"] = "form.choose"
        if errors:
            return 422, {"errors": errors}
        if captured is not None:        # the original time, and the capture as the offline form it came from
            body["reported_at"] = isoformat(captured)
            body["paper_form_ref"] = f"field-capture:{key}"
        sent = self.api.call("POST", "/api/v1/cases", token=session.token, body=body, client=self._client(request),
                             headers={"Idempotency-Key": key})
        if sent.ok:
            return 201, {"key": key, "kind": "report", "tracking_no": sent.body.get("tracking_no"),
                         "reported_at": body.get("reported_at") or isoformat(now)}
        if sent.status == 422:
            return 422, {"errors": self._field_errors(sent.error, web.language(request)) or {"other": "error.503"}}
        return (403 if sent.status in (401, 403) else 503), {"error": sent.status}

    # live updates ------------------------------------------------------------------------------------

    def page_live(self, request, view):
        """{position, digest?} of the person's worklist or board (see the module's docstring)."""
        action, query = LIVE_VIEWS[view]
        session, answer = self._require(request, action)
        if answer is not None:
            return answer
        position = self._ledger_position()
        try:
            after = int(request.args.get("after", "-1"))
        except ValueError:
            after = -1
        if position is not None and position == after:
            return _json(200, {"position": position})
        listed = self.api.call("GET", "/api/v1/worklist", token=session.token, query=query or None,
                               client=self._client(request))
        if not listed.ok:
            return _json(503 if listed.status not in (403, 404) else listed.status, {"error": listed.status})
        return _json(200, {"position": position, "digest": worklist_digest(listed.body["cases"], listed.body["total"])})

    def _ledger_position(self) -> int | None:
        """The ledger's head position: one row of the kernel's ledger_head (None when unreadable)."""
        from minqing.db import read_transaction
        from minqing.ledger import head_table
        try:
            with read_transaction(self.engine) as conn:
                return conn.execute(select(head_table.c.position).where(head_table.c.id == 1)).scalar()
        except Exception:       # no ledger in this database (a console on its own): always read the worklist
            return None
