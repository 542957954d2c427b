"""Assessment rebuild rate (issue #7 §5; DESIGN §6: replay into every projection ≥ 50,000 events/s).

`python -m bench.assessment` (part of `make bench`): on a private durable PostgreSQL, CASES cases of
龙江县 are recorded as a month of well-formed events (reported, assigned, accepted, resolved,
followed up; every tenth one overdue and escalated to the township before it is resolved there),
then the assessment projection is dropped and rebuilt from the ledger (`consumer.rebuild`, as
`minqing consumer rebuild assessment.facts` does: on PostgreSQL its fast replay, minqing/replay.py). Figures merge into bench/results.json under
`assessment_rebuild`, with their design bar.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select

from minqing import consumer, county
from minqing.clock import ManualClock, isoformat
from minqing.db import make_engine
from minqing.shell.devstack import PostgreSQL
from minqing.ledger import Ledger, Metadata, NewEvent, StreamWrite, create_schema
from minqing.service_kit import create_tables
from services.assessment.projection import AssessmentFacts
from services.assessment.tables import facts_table, metadata_obj

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
CASES = int(os.environ.get("BENCH_ASSESSMENT_CASES", "20000"))
BAR = 50_000
START = datetime(2026, 3, 2, 1, tzinfo=timezone.utc)
CADRES = [("heigang.kaoshan-station", "lj-c002", "heigang"), ("shanquan.pingan-station", "lj-c003", "shanquan"),
          ("longjiang-zhen.dongsheng-station", "lj-c004", "longjiang-zhen"), ("qikeshu.qikeshu-station", "lj-c005", "qikeshu")]
TOWNSHIP_UNIT = {"heigang": ("heigang-centre", "lj-c006"), "shanquan": ("shanquan-centre", "lj-c007"),
                 "longjiang-zhen": ("longjiang-zhen-centre", "lj-c008"), "qikeshu": ("qikeshu-centre", "lj-c009")}


def case_events(i: int) -> list[NewEvent]:
    case_id = str(uuid.UUID(int=i + 1))
    unit, cadre, township = CADRES[i % len(CADRES)]
    meta = Metadata("bench", "longjiang")
    due = lambda hours: isoformat(START + timedelta(hours=hours))  # noqa: E731
    events = [
        NewEvent("case.reported", {"case_id": case_id, "county": "longjiang", "tracking_no": f"LJ-20260302-{i:06d}",
                                   "channel": "hotline", "category": "202", "kind": "help", "urgency": "normal",
                                   "summary": "路面塌陷", "location": {"township": township, "village": None, "hamlet": None},
                                   "reporter": {"subject": None, "name_masked": "", "phone_masked": ""},
                                   "reported_at": due(0)}, meta),
        NewEvent("case.assigned", {"case_id": case_id, "unit": unit, "cadre": cadre, "tier": "village",
                                   "response_due": due(24), "resolution_due": due(120), "policy_version": 1,
                                   "rule": "bench"}, meta),
        NewEvent("case.accepted", {"case_id": case_id, "cadre": cadre, "unit": unit}, meta)]
    if i % 10 == 0:
        t_unit, t_cadre = TOWNSHIP_UNIT[township]
        events += [NewEvent("case.overdue", {"case_id": case_id, "deadline": "resolution", "due": due(120),
                                             "holder_unit": unit, "holder_cadre": cadre}, meta),
                   NewEvent("case.escalated", {"case_id": case_id, "from_unit": unit, "from_tier": "village",
                                               "to_unit": t_unit, "to_tier": "township", "to_cadre": t_cadre,
                                               "reason": "超期", "automatic": True, "resolution_due": due(300),
                                               "policy_version": 1}, meta)]
        unit, cadre = t_unit, t_cadre
    rating = ("satisfied", "satisfied", "basically_satisfied", "unsatisfied", "unreachable")[i % 5]
    events += [NewEvent("case.resolved", {"case_id": case_id, "cadre": cadre, "unit": unit, "on_site": i % 3 == 0,
                                          "resolution": "已处理"}, meta),
               NewEvent("case.followed_up", {"case_id": case_id, "rating": rating, "via": "sms"}, meta)]
    return events


def main() -> int:
    base = ROOT / ".run" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="assessment-", dir=base))
    pg = PostgreSQL(tmp / "pg", durable=True)
    try:
        pg.start()
        engine = make_engine(pg.create_database("assessment", drop_existing=True))
        create_schema(engine)
        create_tables(engine, metadata_obj)
        ledger = Ledger(engine, ManualClock(START + timedelta(hours=2)))
        county.publish(ledger, county.read_policy_file(ROOT / "deploy" / "counties" / "longjiang.yaml"), "bench")
        print(f"recording {CASES} cases …", flush=True)
        for first in range(0, CASES, 100):
            ledger.append_many([StreamWrite(f"case-{uuid.UUID(int=i + 1)}", case_events(i), 0)
                                for i in range(first, min(first + 100, CASES))])
        total = ledger.head()[0]
        handled = sum(1 for e in ledger.iter_all() if e.type in AssessmentFacts.event_types)
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            consumer.rebuild(ledger, AssessmentFacts(), AssessmentFacts.drop)
            runs.append(time.perf_counter() - started)
        with engine.connect() as conn:
            facts = conn.execute(select(func.count()).select_from(facts_table)).scalar_one()
        engine.dispose()
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    best = min(runs)
    section = {"cases": CASES, "ledger_events": total, "events_handled": handled, "facts": facts,
               "seconds": [round(r, 2) for r in runs], "events_per_s": round(total / best),
               "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "load_average_1m": round(os.getloadavg()[0], 2),
               "method": "consumer.rebuild on durable PostgreSQL, best of 3: the fast replay (minqing/replay.py, "
                         "services/assessment/replay.py): a reader thread on a server-side cursor, attribution "
                         "in the main thread, a writer thread with binary COPY in one transaction, the facts' "
                         "indexes built again at the end"}
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    report["assessment_rebuild"] = section
    bars = [b for b in report.get("design_bars", []) if b.get("workload") != "assessment_rebuild"]
    bars.append({"bar": "replay into the assessment projection (rebuild) on PostgreSQL", "at_least_per_s": BAR,
                 "workload": "assessment_rebuild", "measured_per_s": section["events_per_s"],
                 "met": section["events_per_s"] >= BAR})
    report["design_bars"] = bars
    out = RESULTS.with_suffix(".json.tmp")
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(out, RESULTS)
    print(f"assessment rebuild: {total} events ({facts} facts) in {best:.2f} s = {section['events_per_s']:,} events/s "
          f"(bar {BAR:,}/s {'met' if section['events_per_s'] >= BAR else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
