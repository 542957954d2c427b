"""`minqing` — the command line for operators and auditors.

  minqing run                      the whole stack (private RabbitMQ unless MINQING_AMQP_URI is set)
  minqing gateway                  the public HTTP entry alone (behind nginx)
  minqing relay                    the ledger → broker relay alone
  minqing service NAME             one service alone (intake, routing, notify, assessment, console)
  minqing config check             print the effective configuration (secrets masked), or every problem
  minqing vault keygen|rotate      make a vault key file; put a new primary key first (--reencrypt)
  minqing county load FILE         validate a county policy and publish it (policy.published)
  minqing county check FILE        validate only
  minqing events tail              print ledger events as CloudEvents (--after N, --follow, --broker)
  minqing audit verify             walk the hash chain; non-zero exit naming the first bad position
  minqing audit head               print the head position and hash (publish it as an anchor)
  minqing consumer parked [NAME]   list events consumers parked (failed) or held (behind a parked one)
  minqing consumer retry NAME      apply parked events again after a fix (--position P | --all)
  minqing consumer rebuild NAME    drop a projection and replay the ledger into it
  minqing token issue|revoke|list  access tokens (shown once, stored as hashes)
  minqing access log               who read which case's details
  minqing calendar build YEAR      a year's holidays and make-up days (调休) as a calendar file
  minqing db init                  create every table (services also do this when they start)
  minqing db backup --out FILE     SQLite online backup, or pg_dump (custom format) on PostgreSQL
  minqing db restore FILE          replace the database's content with a backup (processes stopped)
  minqing clock show|advance|set   the demo clock (demo/training deployments: MINQING_CLOCK=demo)
  minqing simulate                 drive a running stack with a county's traffic (docs/simulate.md)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from minqing import config as config_mod

log = logging.getLogger("minqing.cli")


def _fail(message: str, code: int = 1) -> int:
    print(f"minqing: {message}", file=sys.stderr)
    return code


def _engine_and_ledger(settings):
    from minqing.db import make_engine
    from minqing.ledger import Ledger
    from minqing.service_kit import create_tables
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    create_tables(engine)
    return engine, Ledger(engine)


def all_metadata():
    from services.assessment.tables import metadata_obj as assessment
    from services.intake.tables import metadata_obj as intake
    from services.notify.tables import metadata_obj as notify
    from services.routing.tables import metadata_obj as routing
    from minqing.vault import metadata_obj as vault
    return [intake, routing, notify, assessment, vault]


# ---- county ---------------------------------------------------------------------------------------

def cmd_county(args, settings) -> int:
    from minqing.county import PolicyError, publish, read_policy_file
    try:
        policy = read_policy_file(Path(args.file))
    except PolicyError as exc:
        return _fail(f"{args.file}: {exc}")
    if args.action == "check":
        print(f"{args.file}: valid policy for county {policy['county']} ({policy['name']})")
        return 0
    _, ledger = _engine_and_ledger(settings)
    version, published = publish(ledger, policy, actor=f"admin:{os.environ.get('USER', 'cli')}")
    if published:
        print(f"published policy version {version} for county {policy['county']} ({policy['name']})")
    else:
        print(f"county {policy['county']} already at policy version {version} with identical content")
    return 0


# ---- tokens and access ------------------------------------------------------------------------------

def _published_policy(ledger, county: str):
    from minqing.county import CountyPolicy
    published = [e for e in ledger.read_stream(f"county-{county}") if e.type == "policy.published"]
    if not published:
        return None
    return CountyPolicy(published[-1].data["policy"], published[-1].data["version"])


def _county_zones(ledger):
    """county → its zone (of its latest published policy; the default zone when none): the CLI shows
    times as people read them (issue #18.1)."""
    from functools import lru_cache

    from minqing.localtime import zone_of

    @lru_cache(maxsize=None)
    def zone(county):
        return zone_of(_published_policy(ledger, county) if county else None)
    return zone


def cmd_token(args, settings) -> int:
    from minqing import access
    from minqing.db import read_transaction
    engine, ledger = _engine_and_ledger(settings)
    if args.action == "revoke":
        if access.revoke_token(engine, args.token_id):
            print(f"token {args.token_id} revoked")
            return 0
        return _fail(f"no active token with id {args.token_id!r}")
    if args.action == "list":
        from minqing.localtime import local_fields
        zone = _county_zones(ledger)
        with read_transaction(engine) as conn:
            for row in access.list_tokens(conn, args.county):
                row = local_fields(row, ("created_at", "expires_at", "revoked_at"), zone(row["county"]))
                print(json.dumps(row, ensure_ascii=False))
        return 0
    policy = _published_policy(ledger, args.county)
    if policy is None:
        return _fail(f"--county: no policy is published for {args.county!r} (minqing county load FILE)")
    if args.unit and policy.unit(args.unit) is None:
        return _fail(f"--unit: {args.unit!r} is not a unit of {args.county}")
    if args.cadre:
        cadre = next((c for c in policy.doc["cadres"] if c["id"] == args.cadre), None)
        if cadre is None:
            return _fail(f"--cadre: {args.cadre!r} is not a cadre of {args.county}")
        if args.unit and cadre["unit"] != args.unit:
            return _fail(f"--cadre: {args.cadre} belongs to unit {cadre['unit']}, not {args.unit}")
        args.unit = args.unit or cadre["unit"]
    try:
        token_id, token = access.issue_token(engine, args.role, args.county, unit=args.unit, cadre=args.cadre,
                                             label=args.label, days=args.days)
    except ValueError as exc:
        return _fail(str(exc))
    print(f"token id {token_id} ({args.role}, {args.county}{', ' + args.unit if args.unit else ''}); "
          f"shown once, keep it safe:\n{token}")
    return 0


def cmd_access_log(args, settings) -> int:
    from minqing import access
    from minqing.db import read_transaction
    from minqing.localtime import local_fields
    engine, ledger = _engine_and_ledger(settings)
    zone = _county_zones(ledger)(args.county)
    with read_transaction(engine) as conn:
        for row in access.list_access(conn, args.county, args.case_id):
            print(json.dumps(local_fields(row, ("at",), zone), ensure_ascii=False))
    return 0


def cmd_resident(args, settings) -> int:
    """Erase a resident (crypto-shredding): their key is destroyed, their details become unreadable;
    the ledger keeps its subject references and masked forms, still verifies, and cases still count."""
    from minqing import vault as vault_mod
    from minqing.casefile import stream_of
    from minqing.clock import SYSTEM_CLOCK, isoformat
    from minqing.db import read_transaction, write_transaction
    engine, ledger = _engine_and_ledger(settings)
    vault_mod.metadata_obj.create_all(engine)
    vault = vault_mod.Vault(vault_mod.master_keys(settings))
    subject = args.subject
    if args.case:
        reported = [e for e in ledger.read_stream(stream_of(args.case)) if e.type == "case.reported"]
        if not reported:
            return _fail(f"--case: no case {args.case!r}")
        subject = (reported[0].data.get("reporter") or {}).get("subject")
        if not subject:
            return _fail("--case: that case was reported anonymously; there is no resident to erase")
    if args.phone:
        with read_transaction(engine) as conn:
            subject = vault.subject_for_phone(conn, args.phone)
        if subject is None:
            return _fail("--phone: no resident with that number is kept in the vault")
    if args.action == "show":
        with read_transaction(engine) as conn:
            fields = vault.reveal(conn, subject)
        if fields is None:
            return _fail(f"resident {subject}: unknown or erased")
        print(json.dumps({"subject": subject, **fields}, ensure_ascii=False))
        return 0
    with write_transaction(engine) as conn:
        erased = vault.erase(conn, subject, isoformat(SYSTEM_CLOCK.now()))
    if not erased:
        return _fail(f"resident {subject}: unknown or already erased")
    print(f"resident {subject} erased: their details can no longer be read; cases and the ledger are unchanged")
    return 0


def cmd_channel(args, settings) -> int:
    from minqing import vault as vault_mod
    from minqing.clock import SYSTEM_CLOCK
    from minqing.db import write_transaction
    from services.intake import wechat
    from services.intake.tables import metadata_obj as intake_tables
    from services.notify import inbound
    from services.notify.tables import metadata_obj as notify_tables
    engine, ledger = _engine_and_ledger(settings)
    intake_tables.create_all(engine)
    notify_tables.create_all(engine)
    if _published_policy(ledger, args.county) is None:
        return _fail(f"--county: no policy is published for {args.county!r} (minqing county load FILE)")
    vault = vault_mod.Vault(vault_mod.master_keys(settings))
    issue = {"wechat": wechat.new_secret, "sms": inbound.new_secret}[args.channel]     # each service keeps its own
    with write_transaction(engine) as conn:
        secret = issue(conn, vault, args.county, SYSTEM_CLOCK.now())
    print(f"new {args.channel} signing secret for {args.county} (any earlier one stops working); "
          f"shown once, configure it in the account's server:\n{secret}")
    return 0


# ---- notify: outbox, contacts, subscriptions ------------------------------------------------------

def _notify_parts(settings):
    from minqing import vault as vault_mod
    from services.notify.tables import metadata_obj as notify_tables
    from minqing.vault import metadata_obj as vault_tables
    engine, ledger = _engine_and_ledger(settings)
    notify_tables.create_all(engine)
    vault_tables.create_all(engine)
    vault = vault_mod.Vault(vault_mod.master_keys(settings))
    return engine, ledger, vault


def cmd_notify(args, settings) -> int:
    from minqing.clock import SYSTEM_CLOCK
    from minqing.db import read_transaction, write_transaction
    from services.notify import contacts, outbox
    engine, ledger, vault = _notify_parts(settings)
    if args.action == "list":
        with read_transaction(engine) as conn:
            rows = outbox.list_outbox(conn, args.county, args.status, args.limit)
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        if not rows:
            print("no notifications", file=sys.stderr)
        return 0
    if args.action == "retry":
        keys = outbox.retry(ledger, SYSTEM_CLOCK, args.county, None if args.all else args.key)
        if not keys:
            return _fail(f"no failed notification {'of ' + args.county if args.all else repr(args.key)} to retry")
        for key in keys:
            print(f"queued again: {key}")
        return 0
    policy = _published_policy(ledger, args.county)
    if policy is None:
        return _fail(f"--county: no policy is published for {args.county!r} (minqing county load FILE)")
    if args.action == "contact-list":
        with read_transaction(engine) as conn:
            rows = contacts.list_contacts(conn, args.county)
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        if not rows:
            print("no contacts: every cadre, supervisor and board is reached through the log channel", file=sys.stderr)
        return 0
    recipient = (f"cadre:{args.cadre}" if args.cadre else f"supervisor:{args.supervisor}" if args.supervisor
                 else f"board:{args.board}")
    channel, address = (("sms", args.phone) if args.phone else ("email", args.email) if args.email
                        else ("webhook", args.webhook))
    try:
        with write_transaction(engine) as conn:
            masked = contacts.set_contact(conn, vault, policy, recipient, channel, address, SYSTEM_CLOCK.now())
    except contacts.ContactError as exc:
        return _fail(str(exc))
    print(f"{recipient} of {args.county} is now reached by {channel} at {masked}")
    return 0


def cmd_subscription(args, settings) -> int:
    from minqing.clock import SYSTEM_CLOCK
    from minqing.db import read_transaction, write_transaction
    from services.notify import subscriptions
    engine, ledger, vault = _notify_parts(settings)
    if args.action == "add":
        if _published_policy(ledger, args.county) is None:
            return _fail(f"--county: no policy is published for {args.county!r} (minqing county load FILE)")
        try:
            with write_transaction(engine) as conn:
                sub, secret = subscriptions.register(
                    conn, ledger, vault, SYSTEM_CLOCK, county=args.county, url=args.url,
                    types=[t.strip() for t in args.types.split(",") if t.strip()], description=args.description,
                    created_by="cli", from_start=args.from_start)
        except subscriptions.SubscriptionError as exc:
            return _fail(str(exc))
        print(json.dumps(sub, ensure_ascii=False))
        print(f"signing secret (shown once; deliveries carry X-Minqing-Signature: sha256=HMAC-SHA256(body)):\n{secret}")
        return 0
    if args.action == "list":
        with read_transaction(engine) as conn:
            rows = subscriptions.list_for(conn, args.county)
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        if not rows:
            print("no subscriptions", file=sys.stderr)
        return 0
    with write_transaction(engine) as conn:
        removed = subscriptions.remove(conn, args.county, args.id)
    if not removed:
        return _fail(f"no active subscription {args.id!r} in {args.county}")
    print(f"subscription {args.id} removed")
    return 0


# ---- assessment: rules and reports ----------------------------------------------------------------

def cmd_assessment_rules(args, settings) -> int:
    from services.assessment import rules
    try:
        document = rules.read_rules_file(Path(args.file))
    except rules.RulesError as exc:
        return _fail(f"{args.file}: {exc}")
    if args.action == "check":
        print(f"{args.file}: valid assessment rules for county {document['county']}")
        return 0
    _, ledger = _engine_and_ledger(settings)
    if _published_policy(ledger, document["county"]) is None:
        return _fail(f"county: no policy is published for {document['county']!r} (minqing county load FILE)")
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
    from services.assessment.tables import metadata_obj as assessment_tables
    report.quiet_chart_libraries()
    try:
        scorecards.months_of(args.period)
    except scorecards.PeriodError as exc:
        return _fail(f"--period: {exc}")
    engine, ledger = _engine_and_ledger(settings)
    assessment_tables.create_all(engine)
    if _published_policy(ledger, args.county) is None:
        return _fail(f"--county: no policy is published for {args.county!r}")
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


# ---- events / audit / consumers -------------------------------------------------------------------

def cmd_events_tail(args, settings) -> int:
    from minqing import cloudevents
    if args.broker:
        return _tail_broker(args, settings)
    _, ledger = _engine_and_ledger(settings)
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
    from minqing.runner import BROKER_FILE
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
        return _fail(f"no running stack recorded its broker in {source}: start it with `make run`, or name "
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
        return _fail(f"cannot reach the broker {where} (from {source}): {type(exc).__name__}; is the stack "
                     f"running (`make run`)? Otherwise name the broker with MINQING_AMQP_URI")


def cmd_audit(args, settings) -> int:
    from minqing import audit
    engine, ledger = _engine_and_ledger(settings)
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
    for md in all_metadata():
        md.create_all(ledger.engine)
    return getattr(importlib.import_module(module), cls)(ledger, {})


def cmd_consumer(args, settings) -> int:
    from minqing.consumer import list_parked, rebuild, retry
    _, ledger = _engine_and_ledger(settings)
    if args.action == "rebuild":
        if args.name == "notify.rules":
            return _fail("notify.rules is not rebuilt: its outbox records what was sent, and a rebuild would "
                         "send every notification again")
        if args.name not in REBUILDABLE:
            return _fail(f"unknown projection {args.name!r}; one of: {', '.join(REBUILDABLE)}")
        from minqing.progress import Progress, ReadProgress
        progress = Progress(f"rebuild {args.name}")
        projection = _projection(args.name, ledger)
        position = rebuild(ReadProgress(ledger, progress), projection, projection.drop)
        progress.done(f"replayed up to position {position}")
        print(f"{args.name} rebuilt from the ledger up to position {position}")
        return 0
    if args.action == "retry":
        if args.name not in PROJECTIONS:
            return _fail(f"unknown projection {args.name!r}; one of: {', '.join(PROJECTIONS)}")
        try:
            report = retry(ledger, _projection(args.name, ledger), position=args.position)
        except LookupError as exc:
            return _fail(str(exc))
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
        return _fail(str(exc))
    except ImportError:
        return _fail("the chinesecalendar package is not installed (pip install -r requirements.lock)")
    if not args.out:
        sys.stdout.write(text)
        return 0
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"calendar of {args.year} written to {args.out}: include it in the counties' policies "
          f"(calendar.include) and publish them (minqing county load)", file=sys.stderr)
    return 0


def cmd_db_init(args, settings) -> int:
    engine, _ = _engine_and_ledger(settings)
    for md in all_metadata():
        md.create_all(engine)
    print(f"tables ready in {engine.url.render_as_string(hide_password=True)}")
    return 0


def cmd_db_backup(args, settings) -> int:
    from minqing import backup
    try:
        if args.print_only:
            if backup.backend(settings.database_url) == "sqlite":
                return _fail("--print applies to PostgreSQL; SQLite is copied by the online backup API")
            print(backup.dump_plan(settings.database_url, Path(args.out)).shown())
            return 0
        print(backup.backup(settings.database_url, Path(args.out)))
    except backup.BackupError as exc:
        return _fail(str(exc))
    return 0


def cmd_db_restore(args, settings) -> int:
    from minqing import backup
    try:
        print(backup.restore(settings.database_url, Path(args.file)))
    except backup.BackupError as exc:
        return _fail(str(exc))
    print("next: minqing audit verify --expect-head POSITION:HASH (the last head you published)", file=sys.stderr)
    return 0


# ---- processes ------------------------------------------------------------------------------------

def cmd_relay(args, settings) -> int:
    from minqing.logs import setup_logging
    from minqing.relay import Relay
    setup_logging(settings.log_level, "relay")
    _, ledger = _engine_and_ledger(settings)
    try:
        from prometheus_client import start_http_server
        start_http_server(settings.relay_metrics_port, addr=settings.listen_address)
    except OSError as exc:
        log.warning("relay metrics not served on port %d: %s", settings.relay_metrics_port, exc)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Relay(ledger, settings.effective_amqp_uri()).run(stop)
    return 0


def cmd_service(args, settings) -> int:
    # a fresh interpreter: eventlet must patch the standard library before anything else is imported
    os.execv(sys.executable, [sys.executable, "-m", "minqing.service_main", args.name])
    return 0


def cmd_gateway(args, settings) -> int:
    from minqing.gateway import main as gateway_main
    return gateway_main()


def cmd_config(args, settings) -> int:
    """Configuration problems never reach here: main() prints them (exit 1). This also checks the
    vault keys and the notify service's own settings, which are read where they are used."""
    from minqing import vault as vault_mod
    problems = []
    try:
        keys = _peek_keys(settings, vault_mod)
    except vault_mod.VaultError as exc:
        problems.append(f"vault key: {exc}")
        keys = []
    try:
        from services.notify import settings as notify_settings
        notify_settings.load()
    except SystemExit as exc:
        problems.append(str(exc.code).removeprefix("configuration error:").strip())
    if problems:
        print("configuration error:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        return 1
    width = max(len(name) for name, _ in config_mod.describe(settings))
    for name, value in config_mod.describe(settings):
        print(f"{name:<{width}}  {value}")
    print(f"{'vault keys':<{width}}  {len(keys)} (the first is the primary)" if keys
          else f"{'vault keys':<{width}}  none yet: the embedded default makes {settings.vault_key_file} on first use")
    return 0


def _peek_keys(settings, vault_mod) -> list:
    """The configured keys, without making the embedded default's key file."""
    if settings.vault_key or settings.vault_key_file is None or settings.vault_key_file.exists():
        return vault_mod.master_keys(settings)
    return []


def cmd_vault(args, settings) -> int:
    from minqing import vault as vault_mod
    if args.action == "keygen":
        out = Path(args.out)
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _fail(f"{out} exists; `minqing vault rotate` adds a key to an existing file")
        from cryptography.fernet import Fernet
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
        print(f"wrote a new vault key to {out} (mode 0600); point MINQING_VAULT_KEY_FILE at it")
        return 0
    if settings.vault_key or settings.vault_key_file is None:
        return _fail("rotation rewrites the key file: set MINQING_VAULT_KEY_FILE (not MINQING_VAULT_KEY)")
    try:
        keys = vault_mod.rotate(settings.vault_key_file)
    except vault_mod.VaultError as exc:
        return _fail(str(exc))
    print(f"{settings.vault_key_file}: a new primary key; {len(keys) - 1} older key(s) kept to decrypt")
    if args.reencrypt:
        from minqing.db import make_engine
        engine = make_engine(settings.database_url)
        vault_mod.metadata_obj.create_all(engine)
        with engine.begin() as conn:
            count = vault_mod.Vault(keys).reencrypt(conn)
        print(f"re-encrypted {count} resident key(s) under the new primary key")
    print("restart every Minqing process to use the new key (systemctl restart minqing.target)")
    return 0


def cmd_run(args, settings) -> int:
    from minqing.runner import run_stack
    if _start_demo_clock(settings):      # a demo deployment's clock is anchored before any process reads it
        return 1
    return run_stack(settings)


# ---- the demo clock and the simulator ---------------------------------------------------------------

def _start_demo_clock(settings) -> int:
    from minqing import democlock
    try:
        _, ledger = _engine_and_ledger(settings)
        line = democlock.start(ledger)
    except democlock.DemoClockError as exc:
        return _fail(str(exc))
    if line:
        print(line, flush=True)
    return 0


def cmd_clock(args, settings) -> int:
    from zoneinfo import ZoneInfo
    from minqing import democlock
    from minqing.clock import demo_clock_configured, isoformat, parse_instant
    try:
        if args.action == "show":
            if not demo_clock_configured():
                print("system clock: this deployment runs on real time (MINQING_CLOCK=demo is not set)")
                return 0
            _, ledger = _engine_and_ledger(settings)
            now, anchor = democlock.current(ledger)
            local = now.astimezone(ZoneInfo(args.zone)).strftime("%Y-%m-%d %H:%M:%S %Z")
            rate = f"running at {anchor.rate:g}×" if anchor else "not anchored yet (minqing run anchors it)"
            print(f"demo clock: {isoformat(now)} ({local} {args.zone}), {rate}")
            return 0
        democlock.require_demo()
        _, ledger = _engine_and_ledger(settings)
        if args.action == "advance":
            event = democlock.advance(ledger, democlock.parse_duration(args.by))
        else:
            try:
                moment = parse_instant(args.to)
            except ValueError:
                return _fail(f"not an instant with a zone: {args.to!r} (e.g. 2026-11-02T08:00+08:00)")
            rate = democlock.parse_rate(args.rate, "--rate") if args.rate is not None else None
            event = democlock.set_clock(ledger, moment, rate=rate)
    except democlock.DemoClockError as exc:
        return _fail(str(exc), 2)
    moved_to = parse_instant(event.data["demo_at"])
    print(f"demo clock {event.type.split('.')[1]} to {democlock.shown(moved_to, getattr(args, 'zone', None))} ({event.data['demo_at']}, "
          f"ledger position {event.position}); "
          f"every process follows within about {democlock.REFRESH_SECONDS:g} s")
    return 0


def cmd_simulate(args, settings) -> int:
    from minqing.simulate.cli import run
    return run(args, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minqing", description="Minqing (民情) casework")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run the whole stack").set_defaults(func=cmd_run)
    sub.add_parser("relay", help="run the ledger → broker relay").set_defaults(func=cmd_relay)
    sub.add_parser("gateway", help="run the public HTTP entry (behind nginx)").set_defaults(func=cmd_gateway)
    p = sub.add_parser("service", help="run one service")
    p.add_argument("name", choices=["intake", "routing", "notify", "assessment", "console"])
    p.set_defaults(func=cmd_service)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="action", required=True)
    p = cfg.add_parser("check", help="print the effective configuration (secrets masked) or every problem")
    p.set_defaults(func=cmd_config)

    vault = sub.add_parser("vault", help="the vault's master keys").add_subparsers(dest="action", required=True)
    p = vault.add_parser("keygen", help="write a new key file (mode 0600)")
    p.add_argument("--out", required=True, help="the file to write (never overwritten)")
    p.set_defaults(func=cmd_vault)
    p = vault.add_parser("rotate", help="put a new primary key first in MINQING_VAULT_KEY_FILE (old keys still decrypt)")
    p.add_argument("--reencrypt", action="store_true", help="also re-wrap every resident's key under the new key")
    p.set_defaults(func=cmd_vault)

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

    token = sub.add_parser("token", help="access tokens").add_subparsers(dest="action", required=True)
    p = token.add_parser("issue", help="issue a token (shown once)")
    p.add_argument("--role", required=True, choices=["operator", "cadre", "supervisor", "auditor", "integrator", "admin"])
    p.add_argument("--county", required=True)
    p.add_argument("--unit", help="the unit of a cadre, or a supervisor's township unit")
    p.add_argument("--cadre", help="the cadre id (cadre tokens)")
    p.add_argument("--days", type=int, default=90, help="validity in days (default 90)")
    p.add_argument("--label", help="a note on who holds it")
    p.set_defaults(func=cmd_token, action="issue")
    p = token.add_parser("revoke")
    p.add_argument("token_id")
    p.set_defaults(func=cmd_token, action="revoke")
    p = token.add_parser("list")
    p.add_argument("--county")
    p.set_defaults(func=cmd_token, action="list")

    acc = sub.add_parser("access", help="the access record").add_subparsers(dest="action", required=True)
    p = acc.add_parser("log", help="who read which case's details")
    p.add_argument("--county", required=True)
    p.add_argument("--case-id")
    p.set_defaults(func=cmd_access_log)

    resident = sub.add_parser("resident", help="residents' personal data (the vault)").add_subparsers(
        dest="action", required=True)
    for action, text in (("erase", "destroy a resident's key: their details become unreadable for good"),
                         ("show", "print a resident's details (for a request from the resident themself)")):
        p = resident.add_parser(action, help=text)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--subject", help="the resident's vault subject reference")
        which.add_argument("--case", help="the resident who reported this case")
        which.add_argument("--phone", help="the resident with this phone number")
        p.set_defaults(func=cmd_resident)

    channel = sub.add_parser("channel", help="inbound channels").add_subparsers(dest="action", required=True)
    p = channel.add_parser("secret", help="issue the signing secret of an inbound webhook channel")
    p.add_argument("channel", choices=["wechat", "sms"])
    p.add_argument("--county", required=True)
    p.set_defaults(func=cmd_channel)

    notify = sub.add_parser("notify", help="notifications: the outbox and contacts").add_subparsers(
        dest="action", required=True)
    p = notify.add_parser("list", help="notifications of a county, newest first")
    p.add_argument("--county", required=True)
    p.add_argument("--status", choices=["pending", "claimed", "sending", "sent", "failed"])
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_notify)
    p = notify.add_parser("retry", help="send failed notifications again (one key, or --all of a county)")
    p.add_argument("--county", required=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("key", nargs="?")
    which.add_argument("--all", action="store_true")
    p.set_defaults(func=cmd_notify)
    contact = notify.add_parser("contact", help="how cadres, supervisors and notice boards are reached").add_subparsers(
        dest="contact_action", required=True)
    p = contact.add_parser("set")
    p.add_argument("--county", required=True)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--cadre", help="a cadre id")
    who.add_argument("--supervisor", help="a township code, or 'county'")
    who.add_argument("--board", help="an on-site unit's notice board (unit code)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--phone")
    how.add_argument("--email")
    how.add_argument("--webhook", help="a URL that takes the message as JSON")
    p.set_defaults(func=cmd_notify, action="contact-set")
    p = contact.add_parser("list")
    p.add_argument("--county", required=True)
    p.set_defaults(func=cmd_notify, action="contact-list")

    subs = sub.add_parser("subscription", help="webhook subscriptions of other systems").add_subparsers(
        dest="action", required=True)
    p = subs.add_parser("add", help="register a webhook (prints its signing secret once)")
    p.add_argument("--county", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--types", default="case.*", help="comma-separated event types or patterns (default case.*)")
    p.add_argument("--description")
    p.add_argument("--from-start", action="store_true", help="deliver the county's whole history first")
    p.set_defaults(func=cmd_subscription)
    p = subs.add_parser("list")
    p.add_argument("--county", required=True)
    p.set_defaults(func=cmd_subscription)
    p = subs.add_parser("remove")
    p.add_argument("--county", required=True)
    p.add_argument("id")
    p.set_defaults(func=cmd_subscription)

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

    clock = sub.add_parser("clock", help="the demo clock (demo/training deployments only)").add_subparsers(
        dest="action", required=True)
    p = clock.add_parser("show", help="the time every process of the stack follows")
    p.add_argument("--zone", default="Asia/Shanghai", help="also show it in this zone (default Asia/Shanghai)")
    p.set_defaults(func=cmd_clock)
    p = clock.add_parser("advance", help="move the demo clock forward (recorded as clock.advanced)")
    p.add_argument("by", help="a duration: 3d, 12h, 1d12h, 90m, 30s")
    p.set_defaults(func=cmd_clock)
    p = clock.add_parser("set", help="set the demo clock to a later instant (recorded as clock.set)")
    p.add_argument("to", help="an instant with its zone, e.g. 2026-11-02T08:00+08:00")
    p.add_argument("--rate", help="demo seconds per real second from then on (0 stops it between moves)")
    p.set_defaults(func=cmd_clock)

    from minqing.simulate.cli import add_arguments
    p = sub.add_parser("simulate", help="drive a running stack with a county's traffic through its API")
    add_arguments(p)
    p.set_defaults(func=cmd_simulate)

    cal = sub.add_parser("calendar", help="working-day calendars").add_subparsers(dest="action", required=True)
    p = cal.add_parser("build", help="write a year's holidays and make-up days (调休) from the chinesecalendar package")
    p.add_argument("year", type=int)
    p.add_argument("--out", help="the calendar file to write (default: print it)")
    p.set_defaults(func=cmd_calendar)

    db = sub.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    db.add_parser("init").set_defaults(func=cmd_db_init)
    p = db.add_parser("backup", help="back up the database (SQLite online backup; pg_dump on PostgreSQL)")
    p.add_argument("--out", required=True, help="the backup file to write (never overwritten)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="PostgreSQL: print the pg_dump command (password hidden) instead of running it")
    p.set_defaults(func=cmd_db_backup)
    p = db.add_parser("restore", help="replace the database's content with a backup (stop every process first)")
    p.add_argument("file")
    p.set_defaults(func=cmd_db_restore)

    from services.console.commands import add_parser as add_account_parser   # `minqing account …`
    add_account_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "vault" and args.action == "keygen":
        return cmd_vault(args, None)
    settings = config_mod.load()     # bad configuration: every problem named, exit 1, no traceback
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:   # a clear message, never a stack trace, for operators
        from sqlalchemy.exc import SQLAlchemyError
        if isinstance(exc, SQLAlchemyError):
            return _fail(f"database error ({type(exc).__name__}); check MINQING_DATABASE_URL and that the database is up")
        raise


if __name__ == "__main__":
    sys.exit(main())
