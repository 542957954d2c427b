"""What every `minqing` command is built from, the shell's and the services' alike (a service's
commands live in its own `commands.py`): a one-line failure for operators, the ledger, and the county
policy in force."""
from __future__ import annotations

import sys


def fail(message: str, code: int = 1) -> int:
    print(f"minqing: {message}", file=sys.stderr)
    return code


def engine_and_ledger(settings):
    from minqing.db import make_engine
    from minqing.ledger import Ledger
    from minqing.schema import require_current
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    require_current(engine)          # a database older than this code: refuse, naming `minqing db upgrade`
    return engine, Ledger(engine)


def county_zones(ledger):
    """county → its zone (of its latest published policy; the default zone when none): the CLI shows
    times as people read them (issue #18.1)."""
    from functools import lru_cache

    from minqing.localtime import zone_of

    @lru_cache(maxsize=None)
    def zone(county):
        return zone_of(published_policy(ledger, county) if county else None)
    return zone


def published_policy(ledger, county: str):
    from minqing.county import CountyPolicy
    published = [e for e in ledger.read_stream(f"county-{county}") if e.type == "policy.published"]
    if not published:
        return None
    return CountyPolicy(published[-1].data["policy"], published[-1].data["version"])
