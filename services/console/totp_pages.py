"""The console's pages for the optional second factor (services/console/totp.py): enrolment at
`/console/totp` and the code step of the login at `/console/login/code`."""
from __future__ import annotations

from werkzeug.utils import redirect

from services.console import accounts, sessions, totp, web
from services.console.messages import text


class TotpPages:
    """Mixed into services.console.app.Console (uses engine, clock, _require, _form_csrf_ok)."""

    def needs_code(self, account: accounts.Account) -> bool:
        return totp.enrolled(self.engine, account.account_id)

    def ask_code(self, request, account: accounts.Account, status: int = 200, error_text: str | None = None,
                 pending: str | None = None):
        """The login's second step: the code field, with the pending token of the password step."""
        return web.render(request, "login_code.html", status=status, csrf=web.form_token(request),
                          pending=pending or totp.pending_token(self.engine, account.account_id, self.clock),
                          error_text=error_text)

    def page_login_code(self, request):
        if request.method != "POST" or not self._form_csrf_ok(request):
            return redirect("/console/login", 303)
        lang, pending = web.language(request), request.form.get("pending", "")
        try:
            account = totp.check_code(self.engine, pending, request.form.get("code", ""), self.clock)
        except accounts.LoginRefused as refused:
            if refused.reason == "locked":
                return web.render(request, "login.html", status=401, csrf=web.form_token(request),
                                  error_text=text(lang, "login.locked", minutes=refused.minutes))
            return web.render(request, "login_code.html", status=401, csrf=web.form_token(request), pending=pending,
                              error_text=text(lang, "totp.wrong"), errors={"code": "totp.wrong"})
        response = redirect("/console/password" if account.must_change_password
                            else self.home_of(account), 303)
        web.set_session_cookie(response, request, sessions.open_session(self.engine, account, self.clock))
        return response

    @staticmethod
    def home_of(account: accounts.Account) -> str:
        from services.console.app import HOME
        return HOME.get(account.role, "/console/track")

    def page_totp(self, request):
        """Enrolment: a fresh secret shown once (URI and text); stored when a code from it is typed."""
        session, answer = self._require(request)
        if answer is not None:
            return answer
        if totp.enrolled(self.engine, session.account.account_id):
            return web.render(request, "totp.html", session=session, enrolled=True,
                              done=bool(request.args.get("done")))
        errors, secret = {}, totp.new_secret()
        if request.method == "POST":
            secret = request.form.get("secret", "")
            if totp.enrol(self.engine, session.account.account_id, secret, request.form.get("code", ""), self.clock):
                return redirect("/console/totp?done=1", 303)
            errors["code"] = "totp.wrong"
            if len(secret) != 32:              # not one this page made: start again with a fresh one
                secret = totp.new_secret()
        return web.render(request, "totp.html", status=422 if errors else 200, session=session, enrolled=False,
                          secret=secret, uri=totp.uri(secret, session.account.username, session.account.county),
                          errors=errors)
