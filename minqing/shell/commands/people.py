"""`minqing token|access|resident|channel`: access tokens, the access record, residents' personal
data and the inbound channels' secrets."""
from __future__ import annotations

import json

from minqing.commands import county_zones, engine_and_ledger, fail, published_policy


def cmd_token(args, settings) -> int:
    from minqing import access
    from minqing.db import read_transaction
    engine, ledger = engine_and_ledger(settings)
    if args.action == "revoke":
        if access.revoke_token(engine, args.token_id):
            print(f"token {args.token_id} revoked")
            return 0
        return fail(f"no active token with id {args.token_id!r}")
    if args.action == "list":
        from minqing.localtime import local_fields
        zone = county_zones(ledger)
        with read_transaction(engine) as conn:
            for row in access.list_tokens(conn, args.county):
                row = local_fields(row, ("created_at", "expires_at", "revoked_at"), zone(row["county"]))
                print(json.dumps(row, ensure_ascii=False))
        return 0
    policy = published_policy(ledger, args.county)
    if policy is None:
        return fail(f"--county: no policy is published for {args.county!r} (minqing county load FILE)")
    if args.unit and policy.unit(args.unit) is None:
        return fail(f"--unit: {args.unit!r} is not a unit of {args.county}")
    if args.cadre:
        cadre = next((c for c in policy.doc["cadres"] if c["id"] == args.cadre), None)
        if cadre is None:
            return fail(f"--cadre: {args.cadre!r} is not a cadre of {args.county}")
        if args.unit and cadre["unit"] != args.unit:
            return fail(f"--cadre: {args.cadre} belongs to unit {cadre['unit']}, not {args.unit}")
        args.unit = args.unit or cadre["unit"]
    try:
        token_id, token = access.issue_token(engine, args.role, args.county, unit=args.unit, cadre=args.cadre,
                                             label=args.label, days=args.days)
    except ValueError as exc:
        return fail(str(exc))
    print(f"token id {token_id} ({args.role}, {args.county}{', ' + args.unit if args.unit else ''}); "
          f"shown once, keep it safe:\n{token}")
    return 0


def cmd_access_log(args, settings) -> int:
    from minqing import access
    from minqing.db import read_transaction
    from minqing.localtime import local_fields
    engine, ledger = engine_and_ledger(settings)
    zone = county_zones(ledger)(args.county)
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
    engine, ledger = engine_and_ledger(settings)
    vault = vault_mod.Vault(vault_mod.master_keys(settings))
    subject = args.subject
    if args.case:
        reported = [e for e in ledger.read_stream(stream_of(args.case)) if e.type == "case.reported"]
        if not reported:
            return fail(f"--case: no case {args.case!r}")
        subject = (reported[0].data.get("reporter") or {}).get("subject")
        if not subject:
            return fail("--case: that case was reported anonymously; there is no resident to erase")
    if args.phone:
        with read_transaction(engine) as conn:
            subject = vault.subject_for_phone(conn, args.phone)
        if subject is None:
            return fail("--phone: no resident with that number is kept in the vault")
    if args.action == "show":
        with read_transaction(engine) as conn:
            fields = vault.reveal(conn, subject)
        if fields is None:
            return fail(f"resident {subject}: unknown or erased")
        print(json.dumps({"subject": subject, **fields}, ensure_ascii=False))
        return 0
    with write_transaction(engine) as conn:
        erased = vault.erase(conn, subject, isoformat(SYSTEM_CLOCK.now()))
    if not erased:
        return fail(f"resident {subject}: unknown or already erased")
    print(f"resident {subject} erased: their details can no longer be read; cases and the ledger are unchanged")
    return 0


def cmd_channel(args, settings) -> int:
    from minqing import vault as vault_mod
    from minqing.clock import SYSTEM_CLOCK
    from importlib.metadata import entry_points

    from minqing.db import write_transaction
    engine, ledger = engine_and_ledger(settings)
    if published_policy(ledger, args.county) is None:
        return fail(f"--county: no policy is published for {args.county!r} (minqing county load FILE)")
    vault = vault_mod.Vault(vault_mod.master_keys(settings))
    # each service keeps its own channel's secret (entry points `minqing.channel_secrets`)
    issue = entry_points(group="minqing.channel_secrets")[args.channel].load()
    with write_transaction(engine) as conn:
        secret = issue(conn, vault, args.county, SYSTEM_CLOCK.now())
    print(f"new {args.channel} signing secret for {args.county} (any earlier one stops working); "
          f"shown once, configure it in the account's server:\n{secret}")
    return 0


def add_people(sub) -> None:
    """token, access, resident, channel."""
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
