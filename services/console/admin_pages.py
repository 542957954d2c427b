"""The admin's pages (issue #14 §7): the county's console accounts — list, add, disable, enable,
reset — as `minqing account` does (services/console/commands.py), for the admin's own county; the
county's machine tokens (list, issue, revoke, as `minqing token` does); and the county's webhook
subscriptions (notify's API) with their removal.

Accounts are the console's own table, so this is the console's own rule: the admin role manages the
accounts of the admin's county; nobody else sees this page. A cadre account needs the cadre's id
checked against the county's published roster, which only the CLI reads (`minqing account add NAME
--role cadre --cadre ID`); the page adds the other roles. A new or reset password is random, shown
once on the answer page and never again; disabling ends the account's sessions at once."""
from __future__ import annotations

import secrets

from sqlalchemy import select
from werkzeug.utils import redirect

from minqing import access
from minqing.clock import parse_instant
from minqing.db import read_transaction
from services.console import accounts, sessions, web

ADMIN_ROLES = ("operator", "supervisor", "auditor", "admin")     # cadres: the CLI (roster check)
TOKEN_ROLES = ("integrator", "operator", "supervisor", "auditor")   # machines: integrations, call-centre systems


class AdminPages:
    """Mixed into services.console.app.Console (uses engine, clock, catalogue, _require and _error)."""

    def _admin(self, request):
        session, answer = self._require(request)
        if answer is None and session.account.role != "admin":
            return None, self._error(request, 403)
        return session, answer

    def page_accounts(self, request):
        session, answer = self._admin(request)
        if answer is not None:
            return answer
        county, errors, shown, form = session.account.county, {}, None, request.form
        catalogue = self.catalogue(county)
        townships = catalogue["units"]
        if request.method == "POST":
            what, username = form.get("what"), (form.get("username") or "").strip()
            try:
                if what == "add":
                    role, unit = form.get("role", ""), form.get("unit") or None
                    for name, value in (("username", username), ("role", role)):
                        if not value:
                            errors[name] = "form.required"
                    if role and role not in ADMIN_ROLES:
                        errors["role"] = "form.choose"
                    if unit and unit not in {u["code"] for u in catalogue["units"]}:
                        errors["unit"] = "form.choose"
                    if not errors:
                        password = _temporary()
                        accounts.add(self.engine, username, password, role, county, unit=unit, clock=self.clock)
                        shown = {"username": username, "password": password}
                elif what in ("disable", "enable", "reset"):
                    if self._account_county(username) != county:
                        return self._error(request, 404)
                    if what == "reset":
                        password = _temporary()
                        sessions.end_all(self.engine, accounts.reset(self.engine, username, password), self.clock)
                        shown = {"username": username, "password": password}
                    else:
                        account_id = accounts.set_disabled(self.engine, username, what == "disable")
                        if what == "disable":
                            sessions.end_all(self.engine, account_id, self.clock)
                        return redirect(f"/console/admin/accounts?done={what}", 303)
                else:
                    return self._error(request, 404)
            except accounts.AccountError as exc:
                errors[exc.field if exc.field in ("username", "role") else "username"] = \
                    "admin.taken" if "taken" in str(exc) else "admin.bad_username"
        rows = self._accounts(county)
        return web.render(request, "accounts.html", status=422 if errors else (201 if shown else 200), session=session,
                          rows=rows, errors=errors, shown=shown, form=form if errors else {}, roles=ADMIN_ROLES,
                          unit_names={u["code"]: u["name"] for u in catalogue["units"]},
                          units=townships, done=request.args.get("done") if request.args.get("done") in (
                              "disable", "enable") else None)

    def page_subscriptions(self, request):
        """The county's webhook subscriptions as notify's API lists them (delivery position, failures,
        last error), and their removal — with the admin's token, so the API's rules apply."""
        session, answer = self._admin(request)
        if answer is not None:
            return answer
        if request.method == "POST":
            sub_id = request.form.get("id", "")
            if not sub_id.replace("-", "").isalnum():
                return self._error(request, 404)
            gone = self.api.call("DELETE", f"/api/v1/subscriptions/{sub_id}", token=session.token,
                                 client=self._client(request))
            if gone.status != 204:
                return self._error(request, gone.status if gone.status in (403, 404) else 503)
            return redirect("/console/admin/subscriptions?done=1", 303)
        listed = self.api.call("GET", "/api/v1/subscriptions", token=session.token, client=self._client(request))
        if not listed.ok:
            return self._error(request, listed.status if listed.status in (403, 404) else 503)
        return web.render(request, "subscriptions.html", session=session, subs=listed.body["subscriptions"],
                          done=bool(request.args.get("done")))

    def page_tokens(self, request):
        """Machine tokens of the county (the kernel's access tokens, as `minqing token list|issue|revoke`):
        console sessions are left out (they are people's, ended by logging out or disabling the account).
        A new token is shown once; cadre tokens stay with the CLI (the roster check)."""
        session, answer = self._admin(request)
        if answer is not None:
            return answer
        county, errors, shown, form = session.account.county, {}, None, request.form
        catalogue = self.catalogue(county)
        if request.method == "POST":
            if form.get("what") == "revoke":
                token_id = form.get("token_id", "")
                if not any(t["token_id"] == token_id for t in self._tokens(county)) or \
                        not access.revoke_token(self.engine, token_id, self.clock):
                    return self._error(request, 404)
                return redirect("/console/admin/tokens?done=revoke", 303)
            role, unit, label = form.get("role", ""), form.get("unit") or None, (form.get("label") or "").strip()
            days = form.get("days", "").strip()
            if role not in TOKEN_ROLES:
                errors["role"] = "form.choose" if role else "form.required"
            if unit and unit not in {u["code"] for u in catalogue["units"]}:
                errors["unit"] = "form.choose"
            if not label:
                errors["label"] = "form.required"
            if not days.isdigit() or not 1 <= int(days) <= 3650:
                errors["days"] = "admin.days_range"
            if not errors:
                token_id, token = access.issue_token(self.engine, role, county, unit=unit, label=label[:200],
                                                     days=int(days), clock=self.clock)
                shown = {"token_id": token_id, "token": token}
        return web.render(request, "tokens.html", status=422 if errors else (201 if shown else 200), session=session,
                          tokens=self._tokens(county), errors=errors, shown=shown, form=form if errors else {},
                          roles=TOKEN_ROLES, units=catalogue["units"], now=self.clock.now(),
                          unit_names={u["code"]: u["name"] for u in catalogue["units"]},
                          done=request.args.get("done") == "revoke")

    def _tokens(self, county: str) -> list[dict]:
        with read_transaction(self.engine) as conn:
            people = set(conn.execute(select(sessions.sessions_table.c.token_id)).scalars())
            rows = [t for t in access.list_tokens(conn, county) if t["token_id"] not in people]
        now = self.clock.now()
        for t in rows:
            t["state"] = ("revoked" if t["revoked_at"] else
                          "expired" if parse_instant(t["expires_at"]) <= now else "active")
        return rows

    def _account_county(self, username: str) -> str | None:
        with read_transaction(self.engine) as conn:
            return conn.execute(select(accounts.accounts_table.c.county)
                                .where(accounts.accounts_table.c.username == username)).scalar()

    def _accounts(self, county: str) -> list[dict]:
        t = accounts.accounts_table
        now = self.clock.now()
        with read_transaction(self.engine) as conn:
            rows = conn.execute(select(t.c.username, t.c.role, t.c.unit, t.c.cadre, t.c.disabled,
                                       t.c.must_change_password, t.c.locked_until, t.c.created_at)
                                .where(t.c.county == county).order_by(t.c.role, t.c.username)).mappings().all()
        return [{**r, "locked": bool(r["locked_until"]) and parse_instant(r["locked_until"]) > now} for r in rows]


def _temporary() -> str:
    """A temporary password: 16 characters, read out or copied once, changed at the first login."""
    return secrets.token_urlsafe(12)
