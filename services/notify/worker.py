"""Notify's background work, a nameko dependency of NotifyService: the sender, the 回访 timer, the
on-site announcements and the webhook deliveries."""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Histogram

from minqing.clock import SYSTEM_CLOCK
from minqing.service_kit import LedgerProvider, VaultProvider
from services.notify import announcements, followup, subscriptions
from services.notify.channels import build_channels
from services.notify.outbox import deliver_due
from services.notify.settings import load as load_settings

log = logging.getLogger("minqing.notify")
SENT = Counter("minqing_notify_delivered_total", "Notifications delivered by the outbox")
WEBHOOKS = Counter("minqing_notify_webhook_deliveries_total", "Events delivered to webhook subscribers")
ROUND = Histogram("minqing_notify_round_seconds", "Duration of one notify work round")


class Worker(DependencyProvider):
    """The sender, the 回访 timer, the on-site announcements and the webhook deliveries, every
    MINQING_NOTIFY_SECONDS in a managed thread (each step isolated: one failing does not stop the rest)."""

    def setup(self):
        provider = next(d for d in self.container.dependencies if isinstance(d, LedgerProvider))
        vault = next(d for d in self.container.dependencies if isinstance(d, VaultProvider))
        self.ledger_provider, self.vault_provider = provider, vault
        self.settings = load_settings()
        self.channels = build_channels(self.settings)
        self._running = False

    def start(self):
        self._running = True
        ledger, vault, s = self.ledger_provider.ledger, self.vault_provider.vault, self.settings
        # two loops, so a slow or unreachable subscriber never holds up residents' and cadres' messages
        self.container.spawn_managed_thread(lambda: self._loop((
            ("deliver", lambda: SENT.inc(deliver_due(ledger, vault, self.channels, SYSTEM_CLOCK,
                                                     max_attempts=s.max_attempts, backoff_seconds=s.backoff_seconds,
                                                     lease=timedelta(seconds=s.lease_seconds)))),
            ("follow-up", lambda: followup.advance(ledger, SYSTEM_CLOCK)),
            ("announce", lambda: announcements.announce(ledger, SYSTEM_CLOCK)),
        )), identifier="notify-outbox")
        self.container.spawn_managed_thread(lambda: self._loop((
            ("webhooks", lambda: WEBHOOKS.inc(subscriptions.deliver_round(ledger, vault, SYSTEM_CLOCK,
                                                                          timeout=s.webhook_timeout))),
        )), identifier="notify-webhooks")

    def stop(self):
        self._running = False

    kill = stop

    def _loop(self, steps):
        while self._running:
            started = time.perf_counter()
            for name, step in steps:
                try:
                    step()
                except Exception:
                    log.exception("notify %s step failed; retrying next round", name)
            ROUND.observe(time.perf_counter() - started)
            time.sleep(self.settings.interval)

    def get_dependency(self, worker_ctx):
        return self
