"""The supervisor's pages (issue #14 §4): the board of overdue and at-risk cases by township and
unit, with the returned cases waiting for re-dispatch, and the monthly dispatch meeting's agenda."""
from __future__ import annotations

from minqing.clock import parse_instant
from services.console import web

LEVELS = ("chase", "supervise", "listed")        # 催办 → 督办 → 挂牌督办 (services/routing/timers.py)
# The board's "at risk": not overdue yet, but the deadline that counts now (acceptance while assigned,
# else resolution) falls within the county's warning window — its policy's escalation.warn_before_hours,
# which routing's worklist carries; these hours (the policy schema's defaults) only when it does not.
AT_RISK_HOURS = {"response": 2, "resolution": 24}


class BoardPages:
    # supervisor ------------------------------------------------------------------------------------

    def page_board(self, request):
        """Overdue and at-risk cases of the supervisor's townships, grouped by township and unit, and
        the returned cases waiting for re-dispatch — from the same worklist API, with the supervisor's token."""
        session, answer, listed = self._supervised_worklist(request)
        if answer is not None:
            return answer
        catalogue = self.catalogue(session.account.county)
        townships = {t["code"]: t["name"] for t in catalogue["townships"]}
        units = {u["code"]: u["name"] for u in catalogue["units"]}
        lang, now = web.language(request), self.clock.now()
        groups: dict[tuple[str, str], list] = {}
        returned, counts = [], {"overdue": 0, "at_risk": 0}
        windows = {**AT_RISK_HOURS, **(listed.body.get("warn_before_hours") or {})}
        for case in listed.body["cases"]:
            if case["status"] == "returned":
                returned.append({**case, "unit_name": units.get(case["unit"], case["unit"]),
                                 "township_name": townships.get(case.get("township"), case.get("township") or "—")})
                continue
            kind = "response" if case["status"] == "assigned" else "resolution"
            due = case[f"{kind}_due"]
            left, over = web.time_left(due, now, lang)
            if case["overdue"] or over:
                state = "overdue"
            elif due and (parse_instant(due) - now).total_seconds() <= windows[kind] * 3600:
                state = "at_risk"
            else:
                continue
            counts[state] += 1
            key = (townships.get(case.get("township"), case.get("township") or "—"), units.get(case["unit"], case["unit"] or "—"))
            groups.setdefault(key, []).append({**case, "state": state, "left": left, "kind": kind})
        ordered = sorted(groups.items(), key=lambda g: (-sum(r["state"] == "overdue" for r in g[1]), g[0]))
        return web.render(request, "board.html", session=session, groups=ordered, returned=returned, counts=counts,
                          units=catalogue["units"], levels=LEVELS, windows=windows)

    def page_agenda(self, request):
        """The agenda of each monthly dispatch meeting of the county (庐阳区's 一线办 on the 25th): the
        open cases routing put before the meeting's tier, with the meeting's day as routing dates it."""
        session, answer, listed = self._supervised_worklist(request)
        if answer is not None:
            return answer
        catalogue = self.catalogue(session.account.county)
        townships = {t["code"]: t["name"] for t in catalogue["townships"]}
        units = {u["code"]: u["name"] for u in catalogue["units"]}
        meetings = [{**m, "cases": [{**c, "township_name": townships.get(c["township"], c["township"] or "—"),
                                     "unit_name": units.get(c["unit"], c["unit"])}
                                    for c in listed.body["cases"] if c.get("tier") == m["tier"]]}
                    for m in listed.body.get("dispatch_meetings", [])]
        return web.render(request, "agenda.html", session=session, meetings=meetings, county=catalogue["name"])

    def _supervised_worklist(self, request):
        """(session, an answer to return instead, the worklist): the supervisor's open cases, read
        from routing's worklist API with the supervisor's own token."""
        session, answer = self._require(request, "case.supervise")
        if answer is not None:
            return session, answer, None
        listed = self.api.call("GET", "/api/v1/worklist", token=session.token, query={"limit": 500},
                               client=self._client(request))
        if not listed.ok:
            return session, self._error(request, listed.status if listed.status in (403, 404) else 503), None
        return session, None, listed
