"""`minqing notify|subscription`: notify's outbox, contacts and webhook subscriptions (registered by
`minqing.shell.cli` from this module's `add_parser`)."""
from __future__ import annotations

import json
import sys

from minqing.commands import engine_and_ledger, fail, published_policy


def _notify_parts(settings):
    from minqing import vault as vault_mod
    engine, ledger = engine_and_ledger(settings)
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
            return fail(f"no failed notification {'of ' + args.county if args.all else repr(args.key)} to retry")
        for key in keys:
            print(f"queued again: {key}")
        return 0
    policy = published_policy(ledger, args.county)
    if policy is None:
        return fail(f"--county: no policy is published for {args.county!r} (minqing county load FILE)")
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
        return fail(str(exc))
    print(f"{recipient} of {args.county} is now reached by {channel} at {masked}")
    return 0


def cmd_subscription(args, settings) -> int:
    from minqing.clock import SYSTEM_CLOCK
    from minqing.db import read_transaction, write_transaction
    from services.notify import subscriptions
    engine, ledger, vault = _notify_parts(settings)
    if args.action == "add":
        if published_policy(ledger, args.county) is None:
            return fail(f"--county: no policy is published for {args.county!r} (minqing county load FILE)")
        try:
            with write_transaction(engine) as conn:
                sub, secret = subscriptions.register(
                    conn, ledger, vault, SYSTEM_CLOCK, county=args.county, url=args.url,
                    types=[t.strip() for t in args.types.split(",") if t.strip()], description=args.description,
                    created_by="cli", from_start=args.from_start)
        except subscriptions.SubscriptionError as exc:
            return fail(str(exc))
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
        return fail(f"no active subscription {args.id!r} in {args.county}")
    print(f"subscription {args.id} removed")
    return 0


def add_parser(sub) -> None:
    """notify, subscription."""
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
