"""Run one Minqing service in this process: `minqing service NAME` (or `python -m minqing.shell.service_main
NAME`), listening on MINQING_LISTEN_ADDRESS at the service's port (minqing.config). The console, a
werkzeug app rather than a nameko service, is handed to services.console.main.

eventlet must patch the standard library before anything else is imported, hence this module.
"""
import os

# psycopg's C wait function polls outside eventlet and would freeze every greenthread while it waits
# for a lock; the select-based one cooperates with the patched `select`.
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import minqing  # noqa: E402,F401  (silences eventlet's deprecation notice first)
import eventlet  # noqa: E402

eventlet.monkey_patch()

import gc  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from minqing import config as config_mod  # noqa: E402
from minqing.shell.registry import SERVICES, service_class  # noqa: E402
from minqing.logs import setup_logging  # noqa: E402

def listen_address(settings: config_mod.Settings, port: int) -> str:
    host = settings.listen_address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def nameko_config(name: str, settings: config_mod.Settings, vault_keys: list[bytes]) -> dict:
    return {
        "AMQP_URI": settings.effective_amqp_uri(),
        "WEB_SERVER_ADDRESS": listen_address(settings, settings.service_ports[name]),
        "DATABASE_URL": settings.database_url,
        "VAULT_KEYS": vault_keys,
        "max_workers": 10,
        "serializer": "json",
        "ACCEPT": ["json", "cloudevents"],
        "HEARTBEAT": 30,
    }


def settle_heap() -> int:
    """Move what start-up built (modules, classes, schemas, the policy caches, nameko's machinery:
    about 100,000 objects) out of the cyclic collector's sight, and return how many were moved.

    Why: those objects live as long as the process, yet every full (generation 2) collection walks
    them all — 60–80 ms on the reference machine, landing at random in a worker's request or in a
    timer sweep's round. Frozen, a full collection costs well under a millisecond. What is collected
    first is not frozen, so nothing collectable is kept; what start-up's objects later point to is
    still collected as usual."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def main(argv=None) -> int:
    from nameko.runners import ServiceRunner

    from minqing import vault as vault_mod

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in (*SERVICES, "console"):
        print(f"usage: minqing service {{{'|'.join((*SERVICES, 'console'))}}}", file=sys.stderr)
        return 2
    name = argv[0]
    settings = config_mod.load()        # a ConfigError ends the process with every problem named
    if name == "console":
        from services.console.main import main as console_main
        return console_main()
    setup_logging(settings.log_level, name)
    try:
        keys = vault_mod.master_keys(settings)
    except vault_mod.VaultError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
    from minqing.db import make_engine
    from minqing.schema import REFUSED_EXIT, SchemaError, require_current
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        require_current(engine, f"minqing service {name}")    # before the broker: refuse at once, with the fix
    except SchemaError as exc:
        print(exc, file=sys.stderr)
        return REFUSED_EXIT          # the units do not restart on it (RestartPreventExitStatus=78)
    finally:
        engine.dispose()
    runner = ServiceRunner(nameko_config(name, settings, keys))
    runner.add_service(service_class(name))
    stopping = eventlet.event.Event()

    def _stop(signum, frame):
        if not stopping.ready():
            stopping.send(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner.start()
    settle_heap()
    logging.getLogger("minqing").info("%s started on %s", name, listen_address(settings, settings.service_ports[name]))
    stopping.wait()
    runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
