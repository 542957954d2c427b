"""The admin's page of parked events (issue #14 §7): what each service set aside for the county —
*parked* (applying it kept failing) or *held* (behind a parked event of its stream) — and a retry
button per event, once the cause is fixed.

Each service answers for its own projection (`GET /api/v1/parked/<service>`, `POST
/api/v1/parked/<service>/<position>/retry`, action `parked.manage`: the county's admin; see
minqing/parked_api.py); the console lays the answers out and posts the retry with the admin's token.
A row shows the event's position, type and stream, when it was set aside and the error's one line —
never the event's data (events carry no personal data anyway)."""
from __future__ import annotations

from werkzeug.utils import redirect

from services.console import web

OUTCOMES = ("applied", "failed", "gone")


class ParkedPages:
    """Mixed into services.console.app.Console (uses api, _require, _client and _error)."""

    @staticmethod
    def _parked_services() -> list[str]:
        """Every service the shell runs: each has the routes (minqing.service_base.Service)."""
        from minqing.shell.registry import SERVICES
        return list(SERVICES)

    def page_parked(self, request):
        session, answer = self._require(request, "parked.manage")
        if answer is not None:
            return answer
        services = self._parked_services()
        if request.method == "POST":
            service, position = request.form.get("service", ""), request.form.get("position", "")
            if service not in services or not (position.isascii() and position.isdigit()):
                return self._error(request, 404)
            done = self.api.call("POST", f"/api/v1/parked/{service}/{position}/retry", token=session.token,
                                 client=self._client(request))
            if done.status == 409:
                outcome = "gone"
            elif done.ok:
                outcome = "applied" if all(o["outcome"] == "applied" for o in done.body["outcomes"]) else "failed"
            else:
                return self._error(request, done.status if done.status in (403, 404) else 503)
            return redirect(f"/console/admin/parked?retried={position}&outcome={outcome}&service={service}", 303)
        groups = []
        for service in services:
            listed = self.api.call("GET", f"/api/v1/parked/{service}", token=session.token,
                                   client=self._client(request))
            groups.append({"service": service, "ok": listed.ok,
                           "consumer": listed.body.get("consumer", service) if listed.ok else service,
                           "events": listed.body.get("events", []) if listed.ok else []})
        outcome = request.args.get("outcome")
        retried = {"position": request.args.get("retried", ""), "service": request.args.get("service", ""),
                   "outcome": outcome} if outcome in OUTCOMES and request.args.get("retried", "").isdigit() else None
        return web.render(request, "parked.html", session=session, groups=groups, retried=retried,
                          total=sum(len(g["events"]) for g in groups))
