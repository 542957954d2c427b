"""The auditor's pages (issue #14 §6): the ledger's verification and its head, a check of a head
published earlier, and the access log (who read which case). The case page shows an auditor the
case's whole timeline with every read merged in (services/console/app.py, `page_case`).

The access log is the intake API's (`GET /api/v1/access-log`, auditors only), read with the auditor's
token. Verification has no HTTP route: it walks the whole chain (`minqing.audit.verify`, what
`minqing audit verify` runs), so the console runs it on the kernel's ledger tables itself, only when
an auditor asks for it (a POST), never on a page view; the verdict is kept in this process and shown
with the time it was reached. Reading the ledger's own rows is the kernel's audit, not another
service's projection (DESIGN principle 9 is about services' tables)."""
from __future__ import annotations

import re
import threading

from sqlalchemy import select
from werkzeug.utils import redirect

from minqing import audit
from minqing.db import read_transaction
from minqing.ledger import events_table, head_table
from services.console import web
from services.console.accounts import accounts_table
from services.console.sessions import sessions_table

AUDITOR_ACTION = "access_log.read"       # the auditor's own action in access.POLICY: auditors only
HEAD = re.compile(r"^\s*(\d{1,18})\s*:\s*([0-9a-fA-F]{64})\s*$")


class AuditPages:
    """Mixed into services.console.app.Console (uses engine, api, clock, _require, _client and _error)."""

    _verdict = None                    # (Verdict, at) of the last verification this console ran
    _verify_lock = threading.Lock()

    def page_audit(self, request):
        session, answer = self._require(request, AUDITOR_ACTION)
        if answer is not None:
            return answer
        errors, expect = {}, None
        if request.method == "POST":
            if request.form.get("what") == "verify":
                with self._verify_lock:          # one walk at a time; a second click waits for the first
                    self._verdict = (audit.verify(self.engine), self.clock.now().isoformat())
                return redirect("/console/audit", 303)
            match = HEAD.match(request.form.get("expect_head", ""))
            if not match:
                errors["expect_head"] = "audit.expect_format"
            else:
                position, wanted = int(match.group(1)), match.group(2).lower()
                with read_transaction(self.engine) as conn:
                    stored = conn.execute(select(events_table.c.hash)
                                          .where(events_table.c.position == position)).scalar()
                expect = {"position": position,
                          "state": "missing" if stored is None else ("ok" if stored == wanted else "bad")}
        with read_transaction(self.engine) as conn:
            head = conn.execute(select(head_table.c.position, head_table.c.hash).where(head_table.c.id == 1)).first()
        return web.render(request, "audit.html", status=422 if errors else 200, session=session, errors=errors,
                          head=head, verdict=self._verdict, expect=expect, form=request.form)

    def page_access_log(self, request):
        session, answer = self._require(request, AUDITOR_ACTION)
        if answer is not None:
            return answer
        case_id = (request.args.get("case_id") or "").strip()
        listed = self.api.call("GET", "/api/v1/access-log", token=session.token,
                               query={"case_id": case_id} if case_id else None, client=self._client(request))
        if not listed.ok:
            return self._error(request, listed.status if listed.status in (403, 404) else 503)
        return web.render(request, "access_log.html", session=session, reads=self.readers(session, request,
                                                                                            listed.body["reads"]),
                          case_id=case_id)

    def case_reads(self, session, request, case_id: str) -> list[dict]:
        """Every recorded read of one case, for the auditor's timeline (empty for other roles)."""
        if session.account.role != "auditor":
            return []
        listed = self.api.call("GET", "/api/v1/access-log", token=session.token, query={"case_id": case_id},
                               client=self._client(request))
        return self.readers(session, request, listed.body.get("reads", [])) if listed.ok else []

    def readers(self, session, request, reads: list[dict]) -> list[dict]:
        """Each read with the reader in words: a cadre's name (from the assessment roster the API
        answers the auditor), a console account's username (this console's own sessions), else the
        role and token id."""
        cadres = {}
        if any(r["actor"].startswith("cadre:") for r in reads):
            listed = self.api.call("GET", f"/api/v1/assessment/{session.account.county}/cadres", token=session.token,
                                   client=self._client(request))
            cadres = {c["subject"]: c["name"] for c in (listed.body.get("cards", []) if listed.ok else [])}
        tokens = {r["token_id"] for r in reads}
        with read_transaction(self.engine) as conn:
            usernames = dict(conn.execute(
                select(sessions_table.c.token_id, accounts_table.c.username)
                .join(accounts_table, accounts_table.c.account_id == sessions_table.c.account_id)
                .where(sessions_table.c.token_id.in_(tokens))).all()) if tokens else {}
        out = []
        for r in reads:
            kind, _, ident = r["actor"].partition(":")
            account = usernames.get(r["token_id"])
            if kind == "cadre":
                who, detail = cadres.get(ident) or ident, " · ".join(x for x in (ident, account) if x)
            else:
                who, detail = account or r["token_id"], (f"token {r['token_id']}" if account else "")
            out.append({**r, "who": who, "detail": detail})
        return out
