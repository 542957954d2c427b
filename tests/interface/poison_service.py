"""A minimal Minqing service built from minqing.service_kit, run in its own process by the broker
tests: `python -m tests.interface.poison_service DATABASE_URL AMQP_URI MODE`.

MODE `ok`: its projection applies nothing; `stuck`: its database is always "away", so its follower
retries in place for ever (as the issue's stuck process did). Prints `ready` once started; stops on
SIGTERM like minqing.shell.service_main.
"""
import os

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import minqing  # noqa: E402,F401
import eventlet  # noqa: E402

eventlet.monkey_patch()

import signal  # noqa: E402
import sys  # noqa: E402

from nameko.runners import ServiceRunner  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from minqing.service_kit import DeadLetters, Following, LedgerProvider, consume_events, service_queue  # noqa: E402

MODE = sys.argv[3] if len(sys.argv) > 3 else "ok"
TYPES = frozenset({"case.progress_noted"})


class Projection:
    name = "test.poison"
    event_types = TYPES

    def __init__(self, ledger, config):
        pass

    def apply(self, conn, event):
        if MODE == "stuck":
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


class PoisonTestService:
    name = "poisontest"
    ledger = LedgerProvider()
    dead_letters = DeadLetters()
    follows = Following(Projection, poll_interval=60)

    @consume_events(service_queue("poisontest", TYPES))
    def on_event(self, body):
        self.follows.on_message(body, self.dead_letters)


def main() -> None:
    runner = ServiceRunner({"AMQP_URI": sys.argv[2], "DATABASE_URL": sys.argv[1], "max_workers": 10,
                            "serializer": "json", "ACCEPT": ["json", "cloudevents"]})
    runner.add_service(PoisonTestService)
    stopping = eventlet.event.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.ready() or stopping.send(True))
    runner.start()
    print("ready", flush=True)
    stopping.wait()
    runner.stop()


if __name__ == "__main__":
    main()
