"""`minqing db upgrade` and `minqing db current` (minqing.schema); registered by the shell (minqing/shell/commands/records.py)."""
from __future__ import annotations

import json
import sys


def cmd_db_upgrade(args, settings) -> int:
    from minqing import schema
    from minqing.db import make_engine
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        before, top = schema.upgrade(engine)
    except schema.SchemaError as exc:
        print(f"minqing: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"{schema.upgrade_message(before, top)} ({engine.url.render_as_string(hide_password=True)})")
    return 0


def cmd_db_current(args, settings) -> int:
    """Where the database stands; exit 0 only when it is at the code's head (usable as a readiness check)."""
    from minqing import schema
    from minqing.db import make_engine
    engine = make_engine(settings.database_url)
    try:
        found = schema.state(engine)
    finally:
        engine.dispose()
    print(json.dumps({"state": found.kind, "revision": found.revision, "head": found.head,
                      "database": engine.url.render_as_string(hide_password=True)}))
    if found.kind != "current":
        print(f"minqing: the database is {found.describe()}"
              + ("" if found.kind == "ahead" else f"; run `{schema.UPGRADE_COMMAND}`"), file=sys.stderr)
        return 1
    return 0


def add_parsers(db) -> None:
    """Register `upgrade`, `current` and the old `init` (now the same as upgrade) under `minqing db`."""
    db.add_parser("upgrade", help="create or upgrade every table to this release's schema (adopts a "
                                  "database from before migrations)").set_defaults(func=cmd_db_upgrade)
    db.add_parser("init", help="the same as upgrade (kept for earlier install guides)").set_defaults(func=cmd_db_upgrade)
    db.add_parser("current", help="print the database's schema version; exit 1 unless it is this "
                                  "release's").set_defaults(func=cmd_db_current)
