"""`minqing county|events|audit|consumer|calendar|db`: county policies, the recorded history and its
consumers, calendars and the database."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
import time

from minqing.commands import engine_and_ledger, fail, published_policy


def cmd_county(args, settings) -> int:
    from minqing.county import PolicyError, publish, read_policy_file
    try:
        policy = read_policy_file(Path(args.file))
    except PolicyError as exc:
        return fail(f"{args.file}: {exc}")
    if args.action == "check":
        print(f"{args.file}: valid policy for county {policy['county']} ({policy['name']})")
        return 0
    _, ledger = engine_and_ledger(settings)
    version, published = publish(ledger, policy, actor=f"admin:{os.environ.get('USER', 'cli')}")
    if published:
        print(f"published policy version {version} for county {policy['county']} ({policy['name']})")
    else:
        print(f"county {policy['county']} already at policy version {version} with identical content")
    return 0


def cmd_events_tail(args, settings) -> int:
    from minqing import cloudevents
    if args.broker:
        return _tail_broker(args, settings)
    _, ledger = engine_and_ledger(settings)
    after = args.after
    try:
        while True:
            events = ledger.read_all(after, 500)
            for event in events:
                if args.type and event.type != args.type:
                    continue
                print(json.dumps(cloudevents.to_cloudevent(event), ensure_ascii=False), flush=True)
            if events:
                after = events[-1].position
                continue
            if not args.follow:
                return 0
            time.sleep(0.2)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


def _broker_uri(settings) -> tuple[str | None, str]:
    """(the broker to tail, where that came from): MINQING_AMQP_URI or MINQING_AMQP_PORT when set,
    else the one the running `minqing run` recorded in its run dir."""
    if settings.amqp_uri or os.environ.get("MINQING_AMQP_PORT"):
        return settings.effective_amqp_uri(), "the environment"
    from minqing.shell.runner import BROKER_FILE
    recorded = settings.run_dir / BROKER_FILE
    try:
        return recorded.read_text().strip() or None, str(recorded)
    except OSError:
        return None, str(recorded)


def _tail_broker(args, settings) -> int:
    import kombu
    from kombu.exceptions import OperationalError
    from minqing.service_kit import EVENTS_EXCHANGE
    uri, source = _broker_uri(settings)
    if uri is None:
        return fail(f"no running stack recorded its broker in {source}: start it with `make run`, or name "
                     f"the broker with MINQING_AMQP_URI (or MINQING_AMQP_PORT for a local one)")
    queue = kombu.Queue("", exchange=EVENTS_EXCHANGE, routing_key=args.routing_key, exclusive=True, auto_delete=True)

    def show(body, message):
        print(json.dumps(body, ensure_ascii=False) if not isinstance(body, (bytes, str)) else body, flush=True)
        message.ack()

    try:
        with kombu.Connection(uri, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            with conn.Consumer(queue, callbacks=[show], accept=["json", "cloudevents"]):
                while True:
                    try:
                        conn.drain_events(timeout=1)
                    except TimeoutError:
                        continue
    except KeyboardInterrupt:
        return 0
    except (OSError, OperationalError) as exc:
        where = kombu.Connection(uri).as_uri()      # the password masked
        return fail(f"cannot reach the broker {where} (from {source}): {type(exc).__name__}; is the stack "
                     f"running (`make run`)? Otherwise name the broker with MINQING_AMQP_URI")


def cmd_audit(args, settings) -> int:
    from minqing import audit
    engine, ledger = engine_and_ledger(settings)
    if args.action == "head":
        position, digest = ledger.head()
        print(json.dumps({"position": position, "hash": digest}))
        return 0
    from minqing.progress import Progress
    progress = Progress("verify")
    verdict = audit.verify(engine, progress=progress.update)
    progress.done(f"{verdict.checked} events checked")
    if args.expect_head:
        pos_text, _, want_hash = args.expect_head.partition(":")
        stored = _hash_at(engine, int(pos_text))
        if verdict.ok and stored != want_hash:
            print(f"FAILED: position {pos_text} does not carry the published hash {want_hash}", file=sys.stderr)
            return 3
    if verdict.ok:
        print(f"OK: {verdict.checked} events verified; head position {verdict.head_position}, hash {verdict.head_hash}")
        return 0
    print(f"FAILED at position {verdict.bad_position}: {verdict.problem} "
          f"({verdict.checked} events verified before it)", file=sys.stderr)
    return 3


def _hash_at(engine, position: int) -> str | None:
    from sqlalchemy import select
    from minqing.ledger import events_table
    with engine.connect() as conn:
        return conn.execute(select(events_table.c.hash).where(events_table.c.position == position)).scalar()


REBUILDABLE = {
    "intake.counties": "services.intake.projection:CountyCatalogue",
    "routing.assignments": "services.routing.projection:RoutingProjection",
    "assessment.facts": "services.assessment.projection:AssessmentFacts",
}


PROJECTIONS = {**REBUILDABLE, "notify.rules": "services.notify.rules:NotificationRules"}


def _projection(name: str, ledger):
    import importlib
    module, _, cls = PROJECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(ledger, {})


def cmd_consumer(args, settings) -> int:
    from minqing.consumer import list_parked, rebuild, retry
    _, ledger = engine_and_ledger(settings)
    if args.action == "rebuild":
        if args.name == "notify.rules":
            return fail("notify.rules is not rebuilt: its outbox records what was sent, and a rebuild would "
                         "send every notification again")
        if args.name not in REBUILDABLE:
            return fail(f"unknown projection {args.name!r}; one of: {', '.join(REBUILDABLE)}")
        from minqing.progress import Progress, ReadProgress
        progress = Progress(f"rebuild {args.name}")
        projection = _projection(args.name, ledger)
        position = rebuild(ReadProgress(ledger, progress), projection, projection.drop)
        progress.done(f"replayed up to position {position}")
        print(f"{args.name} rebuilt from the ledger up to position {position}")
        return 0
    if args.action == "retry":
        if args.name not in PROJECTIONS:
            return fail(f"unknown projection {args.name!r}; one of: {', '.join(PROJECTIONS)}")
        try:
            report = retry(ledger, _projection(args.name, ledger), position=args.position)
        except LookupError as exc:
            return fail(str(exc))
        for line in report:
            print(json.dumps(line, ensure_ascii=False))
        left = len(list_parked(ledger, args.name))
        print(f"{sum(r['outcome'] == 'applied' for r in report)} applied, "
              f"{sum(r['outcome'] == 'failed' for r in report)} failed; {left} still parked or held", file=sys.stderr)
        return 0 if all(r["outcome"] == "applied" for r in report) else 1
    from minqing.localtime import local_iso
    rows = list_parked(ledger, args.name or args.consumer)
    for row in rows:
        print(json.dumps({"consumer": row["consumer"], "position": row["position"], "stream": row["stream"],
                          "type": row["type"], "state": "held" if row["held_behind"] is not None else "parked",
                          "held_behind": row["held_behind"], "error": row["error"],
                          "parked_at": local_iso(row["parked_at"], None),      # the default zone: no county here
                          "event_id": row["event_id"]}, ensure_ascii=False))
    if not rows:
        print("no parked events", file=sys.stderr)
    return 0


def cmd_calendar(args, settings) -> int:
    """`minqing calendar build YEAR [--out FILE]`: the year's calendar file from chinesecalendar."""
    from minqing import holidays
    try:
        text = holidays.render_yaml(args.year)
    except holidays.UnknownYear as exc:
        return fail(str(exc))
    except ImportError:
        return fail("the chinesecalendar package is not installed (pip install -r requirements.lock)")
    if not args.out:
        sys.stdout.write(text)
        return 0
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"calendar of {args.year} written to {args.out}: include it in the counties' policies "
          f"(calendar.include) and publish them (minqing county load)", file=sys.stderr)
    return 0


def cmd_db_backup(args, settings) -> int:
    from minqing import backup
    try:
        if args.print_only:
            if backup.backend(settings.database_url) == "sqlite":
                return fail("--print applies to PostgreSQL; SQLite is copied by the online backup API")
            print(backup.dump_plan(settings.database_url, Path(args.out)).shown())
            return 0
        print(backup.backup(settings.database_url, Path(args.out)))
    except backup.BackupError as exc:
        return fail(str(exc))
    return 0


def cmd_db_restore(args, settings) -> int:
    from minqing import backup
    try:
        print(backup.restore(settings.database_url, Path(args.file)))
    except backup.BackupError as exc:
        return fail(str(exc))
    print("next: minqing audit verify --expect-head POSITION:HASH (the last head you published)", file=sys.stderr)
    return 0


def add_records(sub) -> None:
    """county, events, audit, consumer."""
    county = sub.add_parser("county", help="county policy").add_subparsers(dest="action", required=True)
    for action in ("load", "check"):
        p = county.add_parser(action)
        p.add_argument("file")
        p.set_defaults(func=cmd_county, action=action)

    events = sub.add_parser("events", help="the event log").add_subparsers(dest="action", required=True)
    p = events.add_parser("tail", help="print events as CloudEvents JSON lines")
    p.add_argument("--after", type=int, default=0, help="start after this ledger position")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--type", help="only this event type, e.g. case.reported")
    p.add_argument("--broker", action="store_true", help="show what is published on minqing.events instead")
    p.add_argument("--routing-key", default="#", help="with --broker: binding key (default '#')")
    p.set_defaults(func=cmd_events_tail)

    audit = sub.add_parser("audit", help="verify recorded history").add_subparsers(dest="action", required=True)
    p = audit.add_parser("verify")
    p.add_argument("--expect-head", metavar="POSITION:HASH", help="also check a previously published head")
    p.set_defaults(func=cmd_audit, action="verify")
    audit.add_parser("head").set_defaults(func=cmd_audit, action="head")

    consumer = sub.add_parser("consumer", help="event consumers").add_subparsers(dest="action", required=True)
    p = consumer.add_parser("parked", help="list parked and held events (all consumers, or NAME's)")
    p.add_argument("name", nargs="?", help="a consumer, e.g. routing.assignments")
    p.add_argument("--consumer", help=argparse.SUPPRESS)      # the older spelling of NAME
    p.set_defaults(func=cmd_consumer, action="parked")
    p = consumer.add_parser("retry", help="apply parked events again, each stream in order (after fixing the cause)")
    p.add_argument("name", help=", ".join(PROJECTIONS))
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--position", type=int, help="the stream of this parked or held event")
    which.add_argument("--all", action="store_true", help="every stream with parked events")
    p.set_defaults(func=cmd_consumer, action="retry")
    p = consumer.add_parser("rebuild", help="drop a projection and replay the ledger into it (stop its service first)")
    p.add_argument("name", help=", ".join(REBUILDABLE))
    p.set_defaults(func=cmd_consumer, action="rebuild")


def add_maintenance(sub) -> None:
    """calendar, db."""
    cal = sub.add_parser("calendar", help="working-day calendars").add_subparsers(dest="action", required=True)
    p = cal.add_parser("build", help="write a year's holidays and make-up days (调休) from the chinesecalendar package")
    p.add_argument("year", type=int)
    p.add_argument("--out", help="the calendar file to write (default: print it)")
    p.set_defaults(func=cmd_calendar)

    db = sub.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    from minqing.schema_cli import add_parsers as add_schema_parsers     # `db upgrade|current|init`
    add_schema_parsers(db)
    p = db.add_parser("backup", help="back up the database (SQLite online backup; pg_dump on PostgreSQL)")
    p.add_argument("--out", required=True, help="the backup file to write (never overwritten)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="PostgreSQL: print the pg_dump command (password hidden) instead of running it")
    p.set_defaults(func=cmd_db_backup)
    p = db.add_parser("restore", help="replace the database's content with a backup (stop every process first)")
    p.add_argument("file")
    p.set_defaults(func=cmd_db_restore)
