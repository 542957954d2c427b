"""The simulation: each day has two sessions (09:00 and 16:00, county time). In each, the demo clock
is moved to the session, the stack is let settle (every process follows the clock within a second;
routing's timer sweep fires what fell due), new reports are filed, then cadres, supervisors and
operators act on the matters whose turn it is — all through the public HTTP API.

Only three things touch the database, none of them case data: tokens are issued with
`minqing.access` (as `minqing token issue` does), the clock is moved with `minqing.democlock` (as
`minqing clock` does), and the ledger's head, the checkpoints and what is due (routing's timers,
notify's outbox and 回访 rows) are read to know when the stack has settled (`settle`).

Long because one session's steps, and the order in which their requests may go out concurrently,
have to be read together to see why a seed reproduces its run (`_concurrently` and the comments on
which moves go one at a time); a split would scatter that ordering argument over modules.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Callable, NamedTuple
from zoneinfo import ZoneInfo

from minqing import democlock
from minqing.shell.simulate.api import Api
from minqing.shell.simulate.traffic import Matter, Traffic

SESSIONS = ((9, 0), (16, 0))
TOP_PRESSURE = ("supervise", "listed")
STUCK_SECONDS = 5.0      # the head still that long with only a due timer/notification left: go on
QUIET = 0.2              # the head still that long (and every reader at it, nothing due): settled
POLL = 0.05              # seconds between two looks at the ledger's head
WORKERS = 8              # independent requests of one step sent at once
ROUTING = "routing.assignments"     # the projection whose open cases balance the cadres' load
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
        self.refusals: list[dict] = []        # reports the stack refused
        self.refused: list[dict] = []         # other requests it refused (a 409 when a case moved meanwhile)
        self.by_case: dict[str, Matter] = {}
        self.counters = {"reports_refused": 0, "requests_refused": 0, "visits_logged": 0, "chases_sent": 0, "follow_ups": 0}
        self.timing = {"settling": 0.0, "requests": 0.0}     # wall seconds, for the summary
        self.trail = hashlib.sha256()          # digest of the request sequence (ids replaced by indexes)
        self.tables: set[str] | None = None
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="simulate")

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
        self.settle(self.settle_seconds)      # at least until every process has read the new anchor

    def settle(self, at_least: float = 0.0, quiet: float = QUIET, limit: float = 120.0) -> None:
        """Wait until the stack has done everything the present instant asks of it: every reader of the
        ledger (the relay, each projection and reaction) has applied the head, no routing timer and no
        notification or 回访 is due at the demo time, and the head has not moved for `quiet` seconds;
        and at least `at_least` seconds (after a clock move: every process has read the new anchor).
        A fixed pause alone is not enough on a loaded machine: a sweep or an assignment that runs late
        would then land after the simulated people act, and two runs of one seed would differ."""
        began = time.monotonic()
        try:
            self._settle(began + at_least, quiet, limit)
        finally:
            self.timing["settling"] += time.monotonic() - began
            self.counters["settles"] = self.counters.get("settles", 0) + 1

    def _settle(self, not_before: float, quiet: float, limit: float) -> None:
        deadline = time.monotonic() + limit
        head, since = self.ledger.head()[0], time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(POLL)
            now_head = self.ledger.head()[0]
            if now_head != head:
                head, since = now_head, time.monotonic()
            elif time.monotonic() - since >= quiet and time.monotonic() >= not_before:
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
        timer, notification or 回访 due at the demo time — or None. One read transaction."""
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
        if self.tables is None:           # the tables this deployment has (a stack may lack one)
            from sqlalchemy import inspect
            self.tables = set(inspect(self.ledger.engine).get_table_names())
        wanted = {"checkpoints": "checkpoints", "timers": "routing_timers", "notifications": "notify_outbox",
                  "follow-ups": "notify_followups"}
        with read_transaction(self.ledger.engine) as conn:
            for name, query, params in checks:
                if wanted[name] in self.tables and conn.execute(text(query), params).scalar():
                    return name
        return None

    def caught_up(self, reader: str, position: int, limit: float = 60.0) -> None:
        """Wait until one reader of the ledger (e.g. routing's projection, which balances the cadres'
        load) has applied `position`: a decision that reads it then sees every earlier event."""
        from sqlalchemy import text

        from minqing.db import read_transaction
        began = time.monotonic()
        try:
            while time.monotonic() - began < limit:
                with read_transaction(self.ledger.engine) as conn:
                    at = conn.execute(text("SELECT position FROM checkpoints WHERE name = :n"), {"n": reader}).scalar()
                if at is None or at >= position:
                    return
                time.sleep(POLL)
            self.counters["settle_timeouts"] = self.counters.get("settle_timeouts", 0) + 1
        finally:
            self.timing["settling"] += time.monotonic() - began

    # ---- requests ---------------------------------------------------------------------------------

    def call(self, method: str, path: str, body=None, *, token: str, matter: Matter | None = None):
        return self.calls([Request(method, path, body, token, matter)])[0]

    def calls(self, requests: list["Request"]) -> list[tuple[int, object]]:
        """Send independent requests at once (up to WORKERS), answers in the order given. The request
        digest records them in that order, so it is the same whatever order the stack answers in.
        Only requests whose effects no other one of the batch reads go together (see `run`)."""
        for r in requests:
            matter = r.matter
            shown = r.path if matter is None or matter.case_id is None else r.path.replace(matter.case_id, f"#{matter.index}")
            self.trail.update(json.dumps([r.method, shown, r.body], ensure_ascii=False, sort_keys=True).encode())
        began = time.monotonic()
        send = lambda r: self.api.call(r.method, r.path, r.body, token=self.tokens[r.token])     # noqa: E731
        answers = [send(r) for r in requests] if len(requests) == 1 else list(self.pool.map(send, requests))
        self.timing["requests"] += time.monotonic() - began
        for r, (status, answer) in zip(requests, answers):
            if status >= 400:
                self.counters["requests_refused"] += 1
                self.refused.append({"request": f"{r.method} {r.path.split('?')[0]}", "status": status,
                                     "error": (answer.get("error") or {}).get("code") if isinstance(answer, dict) else None})
        return answers

    # ---- the run ----------------------------------------------------------------------------------

    def run(self) -> None:
        """Each session, in an order chosen so that every decision the stack takes on the cadres' load
        (assigning a report or a reopened case, a move by hand) sees the same history in every run:

        1. the clock moves, the stack settles (timers fire: warnings, lapses, automatic escalations);
        2. cadres (working days) read their matters (at once), then move some by hand one at a time
           (escalate, transfer: each reads the load, so routing's projection must have the previous
           one), then accept, resolve and start joint handling at once (nothing reads the load until
           the next step, which comes after them in the ledger);
        3. residents report, one at a time (each assignment reads the load the previous one left);
        4. mornings of working days: the stack settles; supervisors read their worklists (at once),
           then chase and supervise (at once); cadres log field visits (at once);
        5. the 回访 desk: satisfied ratings at once (they close cases: no load changes), then the
           unsatisfied ones one at a time (each reopening is assigned by the load);
        6. the stack settles at the session's instant before the clock moves on."""
        total = self.days * len(SESSIONS)
        try:
            for day in range(self.days):
                today = self.start + timedelta(days=day)
                working = today.weekday() < 5
                for session in range(len(SESSIONS)):
                    self.move_clock(self.session_instant(day, session))
                    if working:
                        self.work(today)
                    self.file_reports(today, session)
                    if working and session == 0:
                        self.settle()     # the worklists show today's reports and what the cadres just did
                        self.chase()
                        self.field_visits(today)
                    self.follow_ups()
                    # the session's reactions (assignments, reopenings, messages, deliveries) land at its
                    # instant, before the clock moves on: else a message sent late would carry the next
                    # session's time, and the 回访 asks scheduled from it would differ from run to run
                    self.settle()
                    self.session += 1
                    if self.progress:
                        self.progress(self.session, total, today)
            # let the last reactions land, and the timers of the final evening fire
            self.move_clock(self.session_instant(self.days, 0) - timedelta(hours=1))
        finally:
            self.pool.shutdown()

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
        due = [m for m in self.matters
               if m.stage in ("accept", "work") and m.fate != "never" and m.due_session <= self.session]
        views = self.calls([Request("GET", f"/api/v1/cases/{m.case_id}", None, "operator", m) for m in due])
        steps = [step for m, (status, view) in zip(due, views) if status == 200
                 for step in [self.decide(m, view)] if step is not None]
        moves = [s for s in steps if s.request.path.endswith(("/escalate", "/transfer"))]
        for number, step in enumerate(moves):
            status, answer = self.calls([step.request])[0]
            step.done(status)
            if number + 1 < len(moves) and status == 200 and isinstance(answer, dict):
                self.caught_up(ROUTING, answer.get("position", 0))      # the next move reads this one's load
        rest = [s for s in steps if s not in moves]
        for step, (status, _) in zip(rest, self.calls([s.request for s in rest])):
            step.done(status)

    def decide(self, matter: Matter, case: dict) -> "Step | None":
        """What the matter's holder does now, given the case as the stack shows it: a request and what
        follows from its answer; None when there is nothing to send."""
        status, holder = case["status"], case.get("assignment") or {}
        cadre = holder.get("cadre")
        if status in ("resolved", "delivered"):
            matter.stage = "rate"
            return None
        if status not in ("assigned", "accepted", "reopened") or cadre not in self.tokens:
            if status in ("closed", "withdrawn", "merged", "followed_up"):
                matter.stage = "done"
            return None
        path = f"/api/v1/cases/{matter.case_id}"

        def request(action, body):
            return Request("POST", f"{path}/{action}", body, cadre, matter)

        def then(stage=None, after=None, when_ok=False):
            def done(code):
                if when_ok and code != 200:
                    return
                if stage:
                    matter.stage = stage
                if after is not None:
                    matter.due_session = self.session + after
            return done

        if status in ("assigned", "reopened") and matter.stage == "accept":
            return Step(request("accept", {}), then("work", matter.work_after))
        if status == "assigned":        # a new holder after an automatic move: they take it on next
            matter.stage, matter.due_session = "accept", self.session + 1
            if matter.fate == "late":   # the next holder is prompt
                matter.fate, matter.work_after = "resolve", 2
            return None
        tier = self.tier_level.get(holder.get("tier"), "")
        if matter.fate == "escalate" and not matter.moved and tier != "department":
            matter.moved = True
            return Step(request("escalate", {"reason": "本级无法解决，上报上级"}), then("accept", 1))
        if matter.fate == "transfer" and not matter.moved:
            matter.moved = True
            other = self.sideways(holder)
            if other:
                return Step(request("transfer", {"to_unit": other, "reason": "属地不符，转其他单位办理"}),
                            then("accept", 1))
        if matter.fate == "joint" and not matter.moved:
            matter.moved = True
            co = self.co_department(holder, case.get("category"))
            return Step(request("joint", {"co_units": [co], "reason": "需多部门会诊联办"}), then(None, 2))
        return Step(request("resolve", {"resolution": "已协调办结，结果已告知群众",
                                        "on_site": tier in ("hamlet", "village")}),
                    then("rate", 1, when_ok=True))

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
        rated = []
        for matter in self.matters:
            if matter.stage != "rate" or matter.due_session > self.session:
                continue
            rating = matter.rating if matter.reopened == 0 else matter.second_rating
            if matter.reopened >= 2:
                rating = "basically_satisfied"
            rated.append((matter, rating, Request("POST", f"/api/v1/cases/{matter.case_id}/follow-up",
                                                   {"rating": rating, "via": "call", "solved": rating != "unsatisfied"},
                                                   "operator", matter)))
        content = [r for r in rated if r[1] != "unsatisfied"]
        answers = self.calls([request for _, _, request in content])
        # each reopening is assigned by the cadres' load: one at a time, in filing order
        answers += [self.calls([request])[0] for _, rating, request in rated if rating == "unsatisfied"]
        for (matter, rating, _), (code, _) in zip(content + [r for r in rated if r[1] == "unsatisfied"], answers):
            self.counters["follow_ups"] += 1
            if code == 201 and rating == "unsatisfied":
                matter.reopened += 1
                matter.stage, matter.due_session, matter.fate = "accept", self.session + 1, "resolve"
            else:
                matter.stage = "done"

    def chase(self) -> None:
        """Township supervisors chase overdue work (催办); the county supervises what chasing did not move.
        Every worklist is read first (at once), then the chases are sent (at once): a chase changes
        only the pressure on its case, which no other supervisor's choice in this step reads (the
        county supervises what was chased before today)."""
        keys = sorted(k for k in self.tokens if k.startswith("supervisor:"))
        lists = self.worklists(keys)
        chases = []
        for key in keys:
            county_level = key == "supervisor:county"
            rows = lists[key]
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
                chases.append(Request("POST", f"/api/v1/cases/{row['case_id']}/supervise",
                                      {"level": level, "note": "请抓紧办理并反馈", **extra}, key,
                                      self.by_case.get(row["case_id"])))
                sent += 1
        self.counters["chases_sent"] += sum(1 for code, _ in self.calls(chases) if code == 200)

    def whole_worklist(self, key: str) -> tuple[list[dict] | None, list[Request], list[int]]:
        """Every page of a supervisor's worklist: (rows or None, the requests sent, their statuses).
        Called from the pool: the caller records the requests in the digest, in supervisor order."""
        rows: list[dict] = []
        sent: list[Request] = []
        statuses: list[int] = []
        while True:
            sent.append(Request("GET", f"/api/v1/worklist?limit=500&offset={len(rows)}", None, key))
            status, body = self.api.call("GET", sent[-1].path, token=self.tokens[key])
            statuses.append(status)
            if status != 200:
                return None, sent, statuses
            page = body.get("cases", [])
            rows.extend(page)
            if len(page) < 500 or len(rows) >= body.get("total", 0):
                return rows, sent, statuses

    def worklists(self, keys: list[str]) -> dict[str, list[dict] | None]:
        began = time.monotonic()
        read = list(self.pool.map(self.whole_worklist, keys))
        self.timing["requests"] += time.monotonic() - began
        out = {}
        for key, (rows, sent, statuses) in zip(keys, read):
            for r in sent:
                self.trail.update(json.dumps([r.method, r.path, r.body], ensure_ascii=False, sort_keys=True).encode())
            for r, status in zip(sent, statuses):
                if status >= 400:
                    self.counters["requests_refused"] += 1
                    self.refused.append({"request": f"GET {r.path.split('?')[0]}", "status": status, "error": None})
            out[key] = rows
        return out

    def field_visits(self, today: date) -> None:
        visits = []
        for cadre in self.cadres:
            level = self.tier_level.get(self.units[cadre["unit"]]["tier"], "county")
            households = self.traffic.visits(cadre, level)
            if households is None:
                continue
            covered = self.covered(self.units[cadre["unit"]])
            hamlet = self.traffic.visit_place(cadre, covered)
            visits.append(Request("POST", "/api/v1/visits", {"day": today.isoformat(), "hamlet": hamlet,
                                                             "households": households}, cadre["id"]))
        answers = self.calls(visits)
        # Assessment checks a visit's day against its own clock, which follows the demo clock within
        # about a second (democlock.REFRESH_SECONDS): a visit for the new day can reach it just before
        # it has moved there. That refusal is the stack's lag, not the visit's: wait and send it again.
        for _ in range(40):
            late = [i for i, (code, answer) in enumerate(answers) if code == 422 and _refused_day(answer)]
            if not late:
                break
            time.sleep(0.25)
            for i in late:
                r = visits[i]
                answers[i] = self.api.call(r.method, r.path, r.body, token=self.tokens[r.token])
                if answers[i][0] in (200, 201):          # counted as refused by calls(): it was not
                    self.counters["requests_refused"] -= 1
                    self.refused.remove(next(x for x in self.refused if x["request"] == "POST /api/v1/visits"))
        self.counters["visits_logged"] += sum(1 for code, _ in answers if code in (200, 201))

    def covered(self, unit: dict) -> list[dict]:
        codes = unit.get("covers", [])
        if "county" in codes:
            return self.traffic.hamlets
        return [h for h in self.traffic.hamlets if any(h[k] in codes for k in ("township", "village", "hamlet"))]


class Request(NamedTuple):
    method: str
    path: str
    body: object
    token: str                      # the key of the simulated person's token
    matter: Matter | None = None    # named by its number in the request digest


class Step(NamedTuple):
    request: Request
    done: Callable[[int], None]     # what follows from the answer's status


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


def _refused_day(answer) -> bool:
    """A 422 naming only the visit's day (not yet today on the answering service's clock)."""
    fields = ((answer or {}).get("error") or {}).get("fields") or {} if isinstance(answer, dict) else {}
    return set(fields) == {"day"}
