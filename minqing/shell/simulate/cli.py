"""`minqing simulate`: arguments and the run (docs/simulate.md)."""
from __future__ import annotations

import json
import sys
import time
from datetime import date, timedelta
from zoneinfo import ZoneInfo


def add_arguments(p) -> None:
    p.add_argument("--county", default="longjiang")
    p.add_argument("--days", type=int, default=30, help="days to simulate (default 30: a month)")
    p.add_argument("--start", help="first day, YYYY-MM-DD (default: the demo clock's next day)")
    p.add_argument("--seed", type=int, default=2026, help="the same seed gives the same run (default 2026)")
    p.add_argument("--per-day", type=float, default=None,
                   help="average reports a day (default from seed 000: ≈17.7 for a county like 龙江县)")
    p.add_argument("--url", help="the stack's API (default http://127.0.0.1:MINQING_HTTP_PORT)")
    p.add_argument("--json", dest="json_out", help="also write the figures as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args, settings) -> int:
    from minqing import democlock
    from minqing.commands import engine_and_ledger as _engine_and_ledger, fail as _fail, published_policy as _published_policy
    from minqing.shell.simulate import summary
    from minqing.shell.simulate.api import Api, ApiFailure
    from minqing.shell.simulate.driver import Simulation, progress_bar
    from minqing.shell.simulate.traffic import PER_DAY, Traffic

    try:
        democlock.require_demo()
    except democlock.DemoClockError as exc:
        return _fail(f"simulate moves the clock: {exc}", 2)
    if not 1 <= args.days <= 366:
        return _fail("--days: between 1 and 366")
    engine, ledger = _engine_and_ledger(settings)
    policy = _published_policy(ledger, args.county)
    if policy is None:
        return _fail(f"--county: no policy is published for {args.county!r}; is the stack running (minqing run)?")
    api = Api(args.url or f"http://127.0.0.1:{settings.http_port}")
    try:
        status, health = api.call("GET", "/health")
    except ApiFailure as exc:
        return _fail(f"the stack does not answer at {api.base}: {exc}")
    zone = ZoneInfo(policy.doc.get("timezone") or "Asia/Shanghai")
    now, anchor = democlock.current(ledger)
    if args.start:
        try:
            start = date.fromisoformat(args.start)
        except ValueError:
            return _fail(f"--start: not a date YYYY-MM-DD: {args.start!r}")
    else:
        local = now.astimezone(zone)
        start = local.date() + (timedelta(days=1) if local.hour >= 9 else timedelta())
    rate = anchor.rate if anchor else democlock.configured_rate()
    traffic = Traffic(args.seed, policy.doc, policy.doc["cadres"], per_day=args.per_day or PER_DAY)
    sim = Simulation(api=api, ledger=ledger, policy=policy.doc, traffic=traffic, county=args.county, start=start,
                     days=args.days, settle_seconds=democlock.REFRESH_SECONDS + 0.2,
                     progress=None if args.quiet else progress_bar())
    first = sim.session_instant(0, 0)
    if first < now:
        return _fail(f"--start: the demo clock is already at {now.astimezone(zone):%Y-%m-%d %H:%M} and only moves "
                     f"forward; start on a later day")
    after = ledger.head()[0]
    started = time.monotonic()
    # Between the sessions the clock stands still (rate 0), so every run of a seed sees the same instants.
    democlock.set_clock(ledger, now, rate=0, actor="admin:simulate")
    sim.issue_tokens(engine)
    try:
        sim.run()
    except ApiFailure as exc:
        print(file=sys.stderr)
        return _fail(f"the stack failed a request: {exc}")
    finally:
        end, _ = democlock.current(ledger)
        democlock.set_clock(ledger, end, rate=rate, actor="admin:simulate")   # the stack runs on as before
    data = summary.figures(ledger, args.county, after)
    print(summary.render(data, county=args.county, start=start, days=args.days, seed=args.seed,
                         seconds=time.monotonic() - started, requests=api.requests, trail=sim.trail.hexdigest()))
    print("simulated people: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sim.counters.items()))
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in sim.timing.items()) + " (the rest: the simulator itself)")
    for refusal in sim.refusals[:5]:
        print(f"  a report was refused: {refusal}", file=sys.stderr)
    for refusal in sim.refused[:5]:
        print(f"  a request was refused: {refusal}", file=sys.stderr)
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump({"figures": data, "digest": summary.digest(data), "requests_digest": sim.trail.hexdigest(),
                       "start": start.isoformat(), "days": args.days, "seed": args.seed,
                       "counters": sim.counters, "refused": sim.refused[:20], "timing": {k: round(v, 1) for k, v in sim.timing.items()}}, handle, ensure_ascii=False, indent=2)
    return 0
