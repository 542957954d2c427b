"""Logging for every Minqing process: one line per record, prefixed with the process's role.
Log lines never carry raw personal data (principle 8): code logs masked forms and references only."""
import logging
import sys


class _Quiet(logging.Filter):
    """Drops access-log lines whose query string could carry a PIN or token."""

    def filter(self, record):
        msg = record.getMessage()
        return "pin=" not in msg and "token=" not in msg


def setup_logging(level: str, role: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {role:<10} %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_Quiet())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("amqp", "kombu", "nameko", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
