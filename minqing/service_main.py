"""Run one Minqing service in this process: `python -m minqing.service_main <intake|routing|notify|assessment>`.

eventlet must patch the standard library before anything else is imported, hence this module.
"""
import os

# psycopg's C wait function polls outside eventlet and would freeze every greenthread while it waits
# for a lock; the select-based one cooperates with the patched `select`.
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import minqing  # noqa: E402,F401  (silences eventlet's deprecation notice first)
import eventlet  # noqa: E402

eventlet.monkey_patch()

import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from minqing import config as config_mod  # noqa: E402
from minqing.endpoints import SERVICES, service_class  # noqa: E402
from minqing.logs import setup_logging  # noqa: E402

def nameko_config(name: str, settings: config_mod.Settings) -> dict:
    return {
        "AMQP_URI": settings.effective_amqp_uri(),
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{settings.service_ports[name]}",
        "DATABASE_URL": settings.database_url,
        "VAULT_KEY_FILE": str(settings.run_dir / "vault.key"),
        "max_workers": 10,
        "serializer": "json",
        "ACCEPT": ["json", "cloudevents"],
        "HEARTBEAT": 30,
    }


def main(argv=None) -> int:
    from nameko.runners import ServiceRunner

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in SERVICES:
        print(f"usage: python -m minqing.service_main {{{'|'.join(SERVICES)}}}", file=sys.stderr)
        return 2
    name = argv[0]
    settings = config_mod.load()
    setup_logging(settings.log_level, name)
    runner = ServiceRunner(nameko_config(name, settings))
    runner.add_service(service_class(name))
    stopping = eventlet.event.Event()

    def _stop(signum, frame):
        if not stopping.ready():
            stopping.send(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner.start()
    logging.getLogger("minqing").info("%s started on 127.0.0.1:%d", name, settings.service_ports[name])
    stopping.wait()
    runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
