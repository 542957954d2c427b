"""Run the console: `minqing service console`, on MINQING_LISTEN_ADDRESS at its port of
`Settings.service_ports` (the gateway forwards /console/ and /static/ to it)."""
from __future__ import annotations

import signal
import sys
import threading

from werkzeug.serving import make_server

from minqing import config as config_mod
from minqing.logs import setup_logging


def main() -> int:
    settings = config_mod.load()
    setup_logging(settings.log_level, "console")
    from minqing.httpmetrics import RouteMetrics, matcher
    from services.console.app import URLS, main_app
    port = settings.service_ports["console"]
    app = RouteMetrics(main_app(settings), "console", matcher(URLS), serve_metrics=True)
    server = make_server(settings.listen_address, port, app, threaded=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
