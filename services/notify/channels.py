"""Delivery channels behind one interface. The embedded default is the log channel: it writes what
would be sent, to masked recipients only, to the service log."""
from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("minqing.notify.channel")


class Channel(Protocol):
    name: str

    def send(self, address: str | None, recipient_masked: str, body: str, key: str) -> None:
        """Deliver or raise. `key` is the idempotency key to hand to gateways that accept one."""


class LogChannel:
    name = "log"

    def send(self, address, recipient_masked, body, key):
        log.info("notification %s to %s: %s", key, recipient_masked, body)
