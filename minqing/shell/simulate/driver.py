"""The simulation: each day has two sessions (09:00 and 16:00, county time). In each, the demo clock
is moved to the session, the stack is let settle (every process follows the clock within a second;
routing's timer sweep fires what fell due), new reports are filed, then cadres, supervisors and
operators act on the matters whose turn it is — all through the public HTTP API.

Only three things touch the database, none of them case data: tokens are issued with
`minqing.access` (as `minqing token issue` does), the clock is moved with `minqing.democlock` (as
`minqing clock` does), and the ledger's head, the checkpoints and what is due (routing's timers,
notify's outbox and 回访 rows) are read to know when the stack has settled (`settle`).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from minqing import democlock
from minqing.shell.simulate.api import Api
from minqing.shell.simulate.traffic import Matter, Traffic

SESSIONS = ((9, 0), (16, 0))
TOP_PRESSURE = ("supervise", "listed")
STUCK_SECONDS = 5.0      # the head still that long with only a due timer/notification left: go on
SUMMARIES = {"202": "道路水毁，车辆无法通行", "201": "房盖破损，雨天漏水", "301": "代办二代身份证",
             "302": "申请低保救助", "101": "邻里宅基地纠纷", "401": "协调春耕贷款", "901": "其他诉求"}


class Simulation:
    def __init__(self, *, api: Api, ledger, policy: dict, traffic: Traffic, county: str, start: date, days: int,
                 settle_seconds: float, progress=None):
        self.api, self.ledger, self.policy, self.traffic = api, ledger, policy, traffic
        self.county, self.start, self.days = county, start, days
        self.zone = ZoneInfo(policy.get("timezone") or "Asia/Shanghai")
        self.settle_seconds = settle_seconds
        self.progress = progress
        self.matters: list[Matter] = []
        self.tokens: dict[str, str] = {}
        self.units = {u["code"]: u for u in policy["units"]}
        self.tier_level = {t["code"]: t.get("level", t["code"]) for t in policy["tiers"]}
        self.cadres = policy["cadres"]
        self.session = 0
        self.refusals: list[dict] = []
        self.by_case: dict[str, Matter] = {}
        self.counters = {"reports_refused": 0, "requests_refused": 0, "visits_logged": 0, "chases_sent": 0, "follow_ups": 0}
        self.timing = {"settling": 0.0, "requests": 0.0}     # wall seconds, for the summary
        self.trail = hashlib.sha256()          # digest of the request sequence (ids replaced by indexes)

    # ---- set-up -----------------------------------------------------------------------------------

    def issue_tokens(self, engine) -> None:
        from minqing import access
        def issue(key, role, unit=None, cadre=None):
            self.tokens[key] = access.issue_token(engine, role, self.county, unit=unit, cadre=cadre,
                                                  label="minqing simulate", days=800)[1]
        for channel in ("operator", "hotline", "service_hall", "field_visit", "market_post", "suggestion_box",
                        "online", "wechat", "leader_phone"):
            issue(channel, "operator")
        for cadre in self.cadres:
            issue(cadre["id"], "cadre", cadre["unit"], cadre["id"])
        for unit in self.policy["units"]:
            if self.tier_level.get(unit["tier"]) == "township":
                issue(f"supervisor:{unit['code']}", "supervisor", unit["code"])
        issue("supervisor:county", "supervisor")

    # ---- the clock --------------------------------------------------------------------------------

    def session_instant(self, day: int, session: int) -> datetime:
        hour, minute = SESSIONS[session]
        local = datetime.combine(self.start + timedelta(days=day), datetime.min.time()).replace(
            hour=hour, minute=minute, tzinfo=self.zone)
        return local.astimezone(ZoneInfo("UTC"))

    def move_clock(self, moment: datetime) -> None:
        now, _ = democlock.current(self.ledger)
        if moment > now:
            democlock.advance(self.ledger, moment - now, actor="admin:simulate")
        self.settle(self.settle_seconds)

    def settle(self, first_wait: float, quiet: float = 0.5, limit: float = 120.0) -> None:
        """Wait `first_wait`, then until the stack has done everything the present instant asks of it:
        every reader of the ledger (the relay, each projection and reaction) has applied the head, no
        routing timer and no notification or 回访 is due at the demo time, and the head has not moved
        for `quiet` seconds. A fixed quiet period alone is not enough on a loaded machine: a sweep or
        an assignment that runs late would then land after the simulated people act, and two runs of
        one seed would differ."""
        began = time.monotonic()
        try:
            self._settle(first_wait, quiet, limit)
        finally:
            self.timing["settling"] += time.monotonic() - began

    def _settle(self, first_wait: float, quiet: float, limit: float) -> None:
        time.sleep(first_wait)
        deadline = time.monotonic() + limit
        head, since = self.ledger.head()[0], time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now_head = self.ledger.head()[0]
            if now_head != head:
                head, since = now_head, time.monotonic()
            elif time.monotonic() - since >= quiet:
                waiting = self.waiting_for(head)
                if not waiting:
                    return
                if waiting != "checkpoints" and time.monotonic() - since >= STUCK_SECONDS:
                    # something stays due that nothing fires (a timer whose decision is empty): go on
                    self.counters["settle_stuck"] = self.counters.get("settle_stuck", 0) + 1
                    return
        self.counters["settle_timeouts"] = self.counters.get("settle_timeouts", 0) + 1

    def waiting_for(self, head: int) -> str | None:
        """Read-only: what the stack still has to do — a reader behind `head` ("checkpoints"), or a
        timer, notification or 回访 due at the demo time — or None."""
        from sqlalchemy import text

        from minqing.clock import isoformat
        from minqing.db import read_transaction
        now = isoformat(democlock.current(self.ledger)[0])
        checks = (("checkpoints", "SELECT count(*) FROM checkpoints WHERE position < :head", {"head": head}),
                  ("timers", "SELECT count(*) FROM routing_timers WHERE due_at <= :now", {"now": now}),
                  # claimed/sending rows are on their way out (their lease is in the future)
                  ("notifications", "SELECT count(*) FROM notify_outbox WHERE status IN ('claimed', 'sending') "
                   "OR (status = 'pending' AND next_attempt_at <= :now)", {"now": now}),
                  ("follow-ups", "SELECT count(*) FROM notify_followups WHERE status IN ('scheduled', 'asked') "
                   "AND next_due <= :now", {"now": now}))
        for name, query, params in checks:
            try:
                with read_transaction(self.ledger.engine) as conn:
                    if conn.execute(text(query), params).scalar():
                        return name
            except Exception as exc:        # a table this deployment does not have
                if "no such table" not in str(exc) and "does not exist" not in str(exc):
                    raise
        return None

    # ---- requests ---------------------------------------------------------------------------------

    def call(self, method: str, path: str, body=None, *, token: str, matter: Matter | None = None):
        shown = path if matter is None or matter.case_id is None else path.replace(matter.case_id, f"#{matter.index}")
        self.trail.update(json.dumps([method, shown, body], ensure_ascii=False, sort_keys=True).encode())
        began = time.monotonic()
        status, payload = self.api.call(method, path, body, token=self.tokens[token])
        self.timing["requests"] += time.monotonic() - began
        if status >= 400:
            self.counters["requests_refused"] += 1
        return status, payload

    def case(self, matter: Matter) -> dict | None:
        status, body = self.call("GET", f"/api/v1/cases/{matter.case_id}", token="operator", matter=matter)
        return body if status == 200 else None

    # ---- the run ----------------------------------------------------------------------------------

    def run(self) -> None:
        total = self.days * len(SESSIONS)
        for day in range(self.days):
            today = self.start + timedelta(days=day)
            working = today.weekday() < 5
            for session in range(len(SESSIONS)):
                self.move_clock(self.session_instant(day, session))
                self.file_reports(today, session)
                self.settle(0, quiet=0.3)
                if working:
                    self.work(today)
                    if session == 0:
                        self.settle(0, quiet=0.3)     # the worklists show what the cadres just did
                        self.chase()
                        self.field_visits(today)
                self.follow_ups()
                self.session += 1
                if self.progress:
                    self.progress(self.session, total, today)
        # let the last reactions land, and the timers of the final evening fire
        self.move_clock(self.session_instant(self.days, 0) - timedelta(hours=1))

    def file_reports(self, today: date, session: int) -> None:
        for _ in range(self.traffic.volume(today.weekday(), session)):
            matter = self.traffic.matter()
            body = {"county": self.county, "channel": matter.channel, "category": matter.category,
                    "urgency": matter.urgency,
                    "summary": f"{SUMMARIES.get(matter.category, '群众诉求')}（模拟第{matter.index}件）",
                    "location": matter.hamlet}
            if matter.phone:
                body["reporter"] = {"name": f"模拟村民{matter.index}", "phone": matter.phone}
            token = matter.channel if matter.channel in self.tokens else "operator"
            if matter.agent:
                body["agent"] = matter.agent
                token = matter.agent
            status, answer = self.call("POST", "/api/v1/cases", body, token=token)
            if status == 201 and isinstance(answer, dict):
                matter.case_id = answer["case_id"]
                self.by_case[matter.case_id] = matter
                matter.due_session = self.session + matter.accept_after
                self.matters.append(matter)
            else:
                self.counters["reports_refused"] += 1
                self.refusals.append({"channel": matter.channel, "status": status,
                                      "fields": sorted((answer or {}).get("fields", {})) if isinstance(answer, dict) else None})

    def work(self, today: date) -> None:
        for matter in self.matters:
            if matter.stage in ("accept", "work") and matter.fate != "never" and matter.due_session <= self.session:
                self.act(matter)

    def act(self, matter: Matter) -> None:
        case = self.case(matter)
        if case is None:
            return
        status, holder = case["status"], case.get("assignment") or {}
        cadre = holder.get("cadre")
        if status in ("resolved", "delivered"):
            matter.stage = "rate"
            return
        if status not in ("assigned", "accepted", "reopened") or cadre not in self.tokens:
            if status in ("closed", "withdrawn", "merged", "followed_up"):
                matter.stage = "done"
            return
        if status in ("assigned", "reopened") and matter.stage == "accept":
            code, _ = self.call("POST", f"/api/v1/cases/{matter.case_id}/accept", {}, token=cadre, matter=matter)
            matter.stage, matter.due_session = "work", self.session + matter.work_after
            return
        if status == "assigned":        # a new holder after an automatic move: they take it on next
            matter.stage, matter.due_session = "accept", self.session + 1
            if matter.fate == "late":   # the next holder is prompt
                matter.fate, matter.work_after = "resolve", 2
            return
        path = f"/api/v1/cases/{matter.case_id}"
        tier = self.tier_level.get(holder.get("tier"), "")
        if matter.fate == "escalate" and not matter.moved and tier != "department":
            matter.moved = True
            self.call("POST", f"{path}/escalate", {"reason": "本级无法解决，上报上级"}, token=cadre, matter=matter)
            matter.stage, matter.due_session = "accept", self.session + 1
            return
        if matter.fate == "transfer" and not matter.moved:
            matter.moved = True
            other = self.sideways(holder)
            if other:
                self.call("POST", f"{path}/transfer", {"to_unit": other, "reason": "属地不符，转其他单位办理"},
                          token=cadre, matter=matter)
                matter.stage, matter.due_session = "accept", self.session + 1
                return
        if matter.fate == "joint" and not matter.moved:
            matter.moved = True
            co = self.co_department(holder, case.get("category"))
            self.call("POST", f"{path}/joint", {"co_units": [co], "reason": "需多部门会诊联办"}, token=cadre,
                      matter=matter)
            matter.due_session = self.session + 2
            return
        code, _ = self.call("POST", f"{path}/resolve", {"resolution": "已协调办结，结果已告知群众",
                                                        "on_site": tier in ("hamlet", "village")},
                            token=cadre, matter=matter)
        if code == 200:
            matter.stage, matter.due_session = "rate", self.session + 1

    def sideways(self, holder: dict) -> str | None:
        tier = holder.get("tier")
        units = sorted(u for u, d in self.units.items() if d["tier"] == tier and u != holder.get("unit"))
        return units[matter_hash(holder.get("unit", "")) % len(units)] if units else None

    def co_department(self, holder: dict, category: str | None) -> str:
        chosen = next((c.get("department") for c in self.policy["categories"] if c["code"] == category), None)
        departments = sorted(u for u, d in self.units.items() if self.tier_level.get(d["tier"]) == "department")
        if chosen and chosen != holder.get("unit"):
            return chosen
        return next(u for u in departments if u != holder.get("unit"))

    def follow_ups(self) -> None:
        for matter in self.matters:
            if matter.stage != "rate" or matter.due_session > self.session:
                continue
            rating = matter.rating if matter.reopened == 0 else matter.second_rating
            if matter.reopened >= 2:
                rating = "basically_satisfied"
            code, _ = self.call("POST", f"/api/v1/cases/{matter.case_id}/follow-up",
                                {"rating": rating, "via": "call", "solved": rating != "unsatisfied"},
                                token="operator", matter=matter)
            self.counters["follow_ups"] += 1
            if code == 201 and rating == "unsatisfied":
                matter.reopened += 1
                matter.stage, matter.due_session, matter.fate = "accept", self.session + 1, "resolve"
            else:
                matter.stage = "done"

    def chase(self) -> None:
        """Township supervisors chase overdue work (催办); the county supervises what chasing did not move."""
        for key in sorted(k for k in self.tokens if k.startswith("supervisor:")):
            county_level = key == "supervisor:county"
            rows = self.whole_worklist(key)
            if rows is None:
                continue
            sent = 0
            # in the order the matters were filed: the worklist orders equal deadlines by case id,
            # which differs from one database to the next (so the whole list is read, not its first
            # page: where a page ends would differ too)
            rows = sorted(rows, key=lambda r: (
                self.by_case[r["case_id"]].index if r["case_id"] in self.by_case else 10**9, r["case_id"]))
            for row in rows:
                if not row.get("overdue") or sent >= 5:
                    continue
                pressure = row.get("pressure")
                if county_level and pressure == "chase":
                    level, extra = "supervise", {"reply_within_hours": 24}
                elif not county_level and pressure is None:
                    level, extra = "chase", {}
                else:
                    continue
                code, _ = self.call("POST", f"/api/v1/cases/{row['case_id']}/supervise",
                                    {"level": level, "note": "请抓紧办理并反馈", **extra}, token=key,
                                    matter=self.by_case.get(row["case_id"]))
                if code == 200:
                    sent += 1
                    self.counters["chases_sent"] += 1

    def whole_worklist(self, key: str) -> list[dict] | None:
        rows: list[dict] = []
        while True:
            status, body = self.call("GET", f"/api/v1/worklist?limit=500&offset={len(rows)}", token=key)
            if status != 200:
                return None
            page = body.get("cases", [])
            rows.extend(page)
            if len(page) < 500 or len(rows) >= body.get("total", 0):
                return rows

    def field_visits(self, today: date) -> None:
        for cadre in self.cadres:
            level = self.tier_level.get(self.units[cadre["unit"]]["tier"], "county")
            households = self.traffic.visits(cadre, level)
            if households is None:
                continue
            covered = self.covered(self.units[cadre["unit"]])
            hamlet = self.traffic.visit_place(cadre, covered)
            code, _ = self.call("POST", "/api/v1/visits", {"day": today.isoformat(), "hamlet": hamlet,
                                                           "households": households}, token=cadre["id"])
            if code in (200, 201):
                self.counters["visits_logged"] += 1

    def covered(self, unit: dict) -> list[dict]:
        codes = unit.get("covers", [])
        if "county" in codes:
            return self.traffic.hamlets
        return [h for h in self.traffic.hamlets if any(h[k] in codes for k in ("township", "village", "hamlet"))]


def matter_hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def progress_bar(stream=sys.stderr):
    started = time.monotonic()

    def show(done: int, total: int, today: date) -> None:
        width = 30
        filled = int(width * done / total)
        elapsed = time.monotonic() - started
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} sessions, {today.isoformat()}, "
                     f"{elapsed:5.0f} s")
        if done == total:
            stream.write("\n")
        stream.flush()
    return show
