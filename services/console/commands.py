"""`minqing account add|disable|enable|reset|totp-reset`: people's console accounts (services/console/accounts.py).

A new or reset account gets a temporary password, printed once (or read from stdin with
--password-stdin), which must be changed at the first login."""
from __future__ import annotations

import secrets
import sys

from minqing import access


def add_parser(sub) -> None:
    account = sub.add_parser("account", help="people's console accounts").add_subparsers(dest="action", required=True)
    p = account.add_parser("add", help="create an account (a temporary password is printed once)")
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=access.ROLES)
    p.add_argument("--county", required=True)
    p.add_argument("--unit", help="the unit of a cadre or supervisor")
    p.add_argument("--cadre", help="the cadre id of a cadre (the unit defaults to the cadre's)")
    p.add_argument("--password-stdin", action="store_true", help="read the temporary password from stdin")
    p.set_defaults(func=cmd_account)
    for action, text in (("disable", "disable an account and end its sessions"), ("enable", "enable it again")):
        p = account.add_parser(action, help=text)
        p.add_argument("username")
        p.set_defaults(func=cmd_account)
    p = account.add_parser("reset", help="set a temporary password (changed at next login), lift a lockout")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=cmd_account)
    p = account.add_parser("totp-reset", help="remove the account's two-step login (a lost phone); its sessions end")
    p.add_argument("username")
    p.set_defaults(func=cmd_account)


def _password(args) -> tuple[str, bool]:
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n"), False
    return secrets.token_urlsafe(12), True


def cmd_account(args, settings) -> int:
    from minqing.commands import engine_and_ledger as _engine_and_ledger, fail as _fail, published_policy as _published_policy
    from services.console import accounts, sessions
    engine, ledger = _engine_and_ledger(settings)
    try:
        if args.action in ("disable", "enable"):
            account_id = accounts.set_disabled(engine, args.username, args.action == "disable")
            ended = sessions.end_all(engine, account_id) if args.action == "disable" else 0
            print(f"account {args.username} {args.action}d" + (f"; {ended} session(s) ended" if ended else ""))
            return 0
        if args.action == "totp-reset":
            from services.console import totp
            ended = sessions.end_all(engine, totp.reset(engine, args.username))
            print(f"account {args.username}: two-step login removed; {ended} session(s) ended; "
                  f"the person may enrol again at /console/totp")
            return 0
        password, generated = _password(args)
        if args.action == "reset":
            account_id = accounts.reset(engine, args.username, password)
            sessions.end_all(engine, account_id)
        else:
            policy = _published_policy(ledger, args.county)
            if policy is None:
                return _fail(f"--county: no policy is published for {args.county!r} (minqing county load FILE)")
            if args.cadre:
                cadre = next((c for c in policy.doc["cadres"] if c["id"] == args.cadre), None)
                if cadre is None:
                    return _fail(f"--cadre: {args.cadre!r} is not a cadre of {args.county}")
                if args.unit and cadre["unit"] != args.unit:
                    return _fail(f"--cadre: {args.cadre} belongs to unit {cadre['unit']}, not {args.unit}")
                args.unit = args.unit or cadre["unit"]
            if args.unit and policy.unit(args.unit) is None:
                return _fail(f"--unit: {args.unit!r} is not a unit of {args.county}")
            accounts.add(engine, args.username, password, args.role, args.county, unit=args.unit, cadre=args.cadre)
    except accounts.AccountError as exc:
        return _fail(f"{exc.field}: {exc}")
    print(f"account {args.username}: " + (f"temporary password, shown once: {password}" if generated else
                                          "temporary password set") + " (to be changed at the first login)")
    return 0
