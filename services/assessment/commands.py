"""`minqing assessment rules|report`: the county's assessment rules and the period reports (registered
by `minqing.shell.cli` from this module's `add_parser`)."""
from __future__ import annotations

from pathlib import Path

from minqing.commands import engine_and_ledger, fail, published_policy


def cmd_assessment_rules(args, settings) -> int:
    from services.assessment import rules
    try:
        document = rules.read_rules_file(Path(args.file))
    except rules.RulesError as exc:
        return fail(f"{args.file}: {exc}")
    if args.action == "check":
        print(f"{args.file}: valid assessment rules for county {document['county']}")
        return 0
    _, ledger = engine_and_ledger(settings)
    if published_policy(ledger, document["county"]) is None:
        return fail(f"county: no policy is published for {document['county']!r} (minqing county load FILE)")
    version, fresh = rules.publish(ledger, document, actor="admin:cli")
    print(f"assessment rules of {document['county']}: version {version}"
          f"{' published' if fresh else ' (unchanged: already the latest)'}")
    return 0


def cmd_report(args, settings) -> int:
    from minqing.consumer import Follower
    from minqing.db import read_transaction
    from minqing.progress import Progress, ReadProgress
    from services.assessment import report, scorecards
    from services.assessment.projection import AssessmentFacts
    report.quiet_chart_libraries()
    try:
        scorecards.months_of(args.period)
    except scorecards.PeriodError as exc:
        return fail(f"--period: {exc}")
    engine, ledger = engine_and_ledger(settings)
    if published_policy(ledger, args.county) is None:
        return fail(f"--county: no policy is published for {args.county!r}")
    progress = Progress("report")
    progress.step("catching up with the ledger")
    Follower(ReadProgress(ledger, progress), AssessmentFacts()).catch_up()      # the figures as of the ledger's head
    out = Path(args.out or f"report-{args.county}-{args.period}")
    with read_transaction(engine) as conn:
        data, digest, files = report.write(conn, args.county, args.period, out, progress=progress.step)
    progress.done(f"written in {out}/")
    print(f"report of {args.county} for {args.period} (rules version {data['rules_version']}) in {out}/: "
          f"{', '.join(f.name for f in files)}\nfigures digest {digest}")
    if args.publish:
        event = report.publish(ledger, args.county, args.period, data["rules_version"], digest, "admin:cli")
        print(f"assessment.published at ledger position {event.position}")
    return 0


def add_parser(sub) -> None:
    """assessment, report."""
    assess = sub.add_parser("assessment", help="assessment rules").add_subparsers(dest="what", required=True)
    rules_cmd = assess.add_parser("rules", help="county assessment rules").add_subparsers(dest="action", required=True)
    for action, text in (("check", "validate a rules file"), ("load", "publish a rules file as a new version")):
        p = rules_cmd.add_parser(action, help=text)
        p.add_argument("file")
        p.set_defaults(func=cmd_assessment_rules)
    p = sub.add_parser("report", help="write a period's assessment report (HTML, charts, CSV)")
    p.add_argument("--county", required=True)
    p.add_argument("--period", required=True, help="2026-03, 2026-H1 or 2026")
    p.add_argument("--out", help="directory (default report-COUNTY-PERIOD)")
    p.add_argument("--publish", action="store_true", help="close the period: append assessment.published with the digest")
    p.set_defaults(func=cmd_report)
