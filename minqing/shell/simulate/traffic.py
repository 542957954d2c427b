"""The traffic model: how many matters a county raises, through which channels, and what residents,
cadres, supervisors and operators then do. Everything is drawn from one `random.Random(seed)` in a
fixed order, so the same seed gives the same requests (docs/simulate.md explains the figures).

Volumes and proportions come from the seeds:
- seed 000 (龙江县 "1+3"): in the pilot year the county handled 586 disputes and 5,890 proxy matters
  (代理代办); 龙江镇's 群众之家 solved 730 problems (+93 legal services); 靠山村 alone 384 proxy
  matters, 300+ difficulties found on field visits (民情下访) and 24 disputes; hotline, mailbox
  (便民信箱) and the 民生在线 platform are named without figures. About 6,500 matters a year is
  ≈ 18 a day.
- seed 004 (庐阳区 一线为民): 1,580 problems collected on on-site days, 1,272 solved (80.5%) —
  the share of matters a cadre resolves without help before anything escalates.
- seed 000 quotas: county department cadres ≥ 10 on-site days a year, township 30, village 50;
  a cadre keeps in touch with 3–5 households per visit.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

YEARLY_MATTERS = 586 + 5890          # seed 000, the pilot year of 龙江县
PER_DAY = YEARLY_MATTERS / 365        # ≈ 17.7

# Channel codes of the county policy / event contract (minqing.contract.CHANNELS). The proxy share is
# damped from seed 000's 5,890 of ~7,000 (that figure counts routine errands) so every channel shows.
CHANNEL_MIX = {
    "proxy_agent": 40,       # 代办员 (seed 000: 5,890 a year; 靠山村 384)
    "service_hall": 15,      # 群众之家 (seed 000: 龙江镇 730 + 93)
    "field_visit": 12,       # 民情下访 (seed 000: 靠山村 300+ and 24 disputes)
    "hotline": 9,            # 便民热线
    "online": 7,             # 民生在线
    "wechat": 6,
    "market_post": 5,        # 便民服务岗 on market day
    "suggestion_box": 3,     # 便民信箱 / 意见箱 (anonymous notes)
    "leader_phone": 3,       # a leader's published phone
}

# Which categories each channel brings (codes of the county's catalogue; unknown codes are skipped).
CATEGORY_MIX = {"301": 22, "302": 16, "202": 14, "201": 12, "101": 16, "401": 8, "901": 12}
PROXY_CATEGORIES = {"301": 45, "302": 30, "401": 15, "901": 10}

# What the holder does with a matter (seed 004: 1,272 of 1,580 solved on the spot ≈ 80%).
FATES = {
    "resolve": 66,      # accepted next session, resolved within the time limit
    "late": 8,          # accepted late, resolved after the deadline (warned, overdue, often escalated)
    "escalate": 6,      # the holder escalates it (上报) after a look
    "transfer": 4,      # sent sideways to another unit of the same tier (转办)
    "joint": 4,         # joint handling with a county department (会诊)
    "never": 12,        # nobody acts: warned, overdue, escalated automatically up every tier, chased
}
RATINGS = {"satisfied": 84, "basically_satisfied": 16}   # of the nine in ten first ratings that are not …
UNSATISFIED_EVERY = 10      # … unsatisfied: every tenth matter filed (so even a short run reopens some)
VISIT_QUOTA_DAYS = {"village": 50, "hamlet": 50, "township": 30, "department": 10, "county": 10}
WORKING_DAYS_A_YEAR = 250


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


@dataclass
class Matter:
    """One report the simulation files, and the fate drawn for it when it is filed."""
    index: int
    channel: str
    category: str
    hamlet: dict                 # {"township", "village", "hamlet"} codes
    urgency: str
    fate: str
    accept_after: int            # sessions until the holder accepts
    work_after: int              # sessions after acceptance until the holder acts
    rating: str
    second_rating: str           # the rating after a reopened case is resolved again
    phone: str | None
    agent: str | None = None
    case_id: str | None = None
    stage: str = "accept"        # accept → work → rate → done
    due_session: int = 0
    reopened: int = 0
    moved: bool = False          # escalated/transferred/joint already done by hand
    log: list = field(default_factory=list)


class Traffic:
    """The seeded source of everything the simulated people do."""

    def __init__(self, seed: int, catalogue: dict, cadres: list[dict], *, per_day: float = PER_DAY):
        self.rng = random.Random(seed)
        self.per_day = per_day
        self.categories = {c["code"] for c in catalogue.get("categories", [])}
        self.hamlets = [{"township": t["code"], "village": v["code"], "hamlet": h["code"]}
                        for t in catalogue.get("townships", []) for v in t.get("villages", [])
                        for h in v.get("hamlets", [])]
        self.proxy_agents = [c for c in cadres if c.get("role") == "proxy_agent"]
        self.cadres = cadres
        self.count = 0
        # Each cadre's diligence for field visits: some keep the quota, some fall short (flagged).
        self.diligence = {c["id"]: self.rng.choice((0.3, 0.6, 1.0, 1.2, 1.5)) for c in cadres}

    def volume(self, weekday: int, session: int) -> int:
        """Reports in one of the day's two sessions (weekends bring fewer: halls are closed)."""
        mean = self.per_day * (0.45 if weekday >= 5 else 1.2) / 2
        whole = int(mean)
        return whole + (1 if self.rng.random() < mean - whole else 0)

    def matter(self) -> Matter:
        rng = self.rng
        self.count += 1
        channel = pick(rng, CHANNEL_MIX)
        mix = PROXY_CATEGORIES if channel == "proxy_agent" else CATEGORY_MIX
        category = pick(rng, {k: v for k, v in mix.items() if k in self.categories} or {"901": 1})
        place = rng.choice(self.hamlets)
        fate = pick(rng, FATES)
        agent = None
        if channel == "proxy_agent" and self.proxy_agents:
            local = [a for a in self.proxy_agents if any(p.startswith(place["village"]) for p in a.get("liaison", []))]
            agent = rng.choice(local or self.proxy_agents)["id"]
        matter = Matter(
            index=self.count, channel=channel, category=category, hamlet=place,
            urgency="urgent" if rng.random() < 0.05 else "normal", fate=fate,
            accept_after=1 if fate != "late" else rng.choice((3, 4, 5)),
            work_after=rng.choice((1, 2, 3, 4, 6)) if fate != "late" else rng.choice((14, 18, 22)),
            rating="unsatisfied" if self.count % UNSATISFIED_EVERY == 0 else pick(rng, RATINGS), second_rating=pick(rng, {"satisfied": 60, "basically_satisfied": 30,
                                                                 "unsatisfied": 10}),
            phone=None if channel == "suggestion_box" else f"139{self.count:08d}", agent=agent)
        return matter

    def visits(self, cadre: dict, tier: str) -> int | None:
        """Households visited today by this cadre (None: no visit today)."""
        quota = VISIT_QUOTA_DAYS.get(tier, 10)
        if self.rng.random() < quota / WORKING_DAYS_A_YEAR * self.diligence[cadre["id"]]:
            return self.rng.randint(3, 5)
        return None

    def visit_place(self, cadre: dict, covered: list[dict]) -> str:
        liaison = cadre.get("liaison") or []
        if liaison:
            return self.rng.choice(liaison)
        return self.rng.choice(covered or self.hamlets)["hamlet"]
