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
  minqing db upgrade               create or upgrade every table (migrations); `db current` shows the version
  minqing db backup --out FILE     SQLite online backup, or pg_dump (custom format) on PostgreSQL
  minqing db restore FILE          replace the database's content with a backup (processes stopped)
  minqing clock show|advance|set   the demo clock (demo/training deployments: MINQING_CLOCK=demo)
  minqing simulate                 drive a running stack with a county's traffic (docs/simulate.md)
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from minqing import config as config_mod
from minqing.commands import fail
from minqing.shell.commands import people, records, stack

log = logging.getLogger("minqing.cli")

# Every command group, in the order `minqing --help` lists them: the shell's own, and those each service
# contributes from its `commands` module (a function `add_parser(sub)` adding its subcommands).
COMMANDS = (
    stack.add_processes,                # run, relay, gateway, service, config, vault
    records.add_records,                # county, events, audit, consumer
    people.add_people,                  # token, access, resident, channel
    "services.notify.commands",         # notify, subscription
    "services.assessment.commands",     # assessment, report
    stack.add_demo,                     # clock, simulate
    records.add_maintenance,            # calendar, db
    "services.console.commands",        # account
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minqing", description="Minqing (民情) casework")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        (importlib.import_module(add).add_parser if isinstance(add, str) else add)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "vault" and args.action == "keygen":
        return args.func(args, None)
    settings = config_mod.load()     # bad configuration: every problem named, exit 1, no traceback
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    from minqing.schema import REFUSED_EXIT, SchemaError
    try:
        return args.func(args, settings)
    except SchemaError as exc:     # an older (or newer) schema: the message names `minqing db upgrade`
        print(exc, file=sys.stderr)
        return REFUSED_EXIT
    except KeyboardInterrupt:
        return 130
    except Exception as exc:   # a clear message, never a stack trace, for operators
        from sqlalchemy.exc import SQLAlchemyError
        if isinstance(exc, SQLAlchemyError):
            return fail(f"database error ({type(exc).__name__}); check MINQING_DATABASE_URL and that the database is up")
        raise


if __name__ == "__main__":
    sys.exit(main())
