"""`minqing run` (the embedded all-in-one default) upgrades its own database before it starts anything,
and says what it did; every separately placed process only checks (minqing.schema.require_current)."""
from __future__ import annotations

import sys

from minqing import schema
from minqing.db import make_engine


def upgrade_own_database(settings) -> bool:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        before, top = schema.upgrade(engine)
    except schema.SchemaError as exc:
        print(f"minqing: {exc}", file=sys.stderr)
        return False
    finally:
        engine.dispose()
    if before.kind != "current":
        print(f"minqing run: {schema.upgrade_message(before, top)} (the embedded default upgrades its own "
              f"database; placed processes need `{schema.UPGRADE_COMMAND}`)", flush=True)
    return True
