"""Notify's background work, a nameko dependency of NotifyService: the sender, the 回访 timer, the
on-site announcements and the webhook deliveries."""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Histogram

from minqing import ledger_listen
from minqing.clock import SYSTEM_CLOCK, demo_clock_configured
from minqing.service_kit import LedgerProvider, VaultProvider
from services.notify import announcements, followup, subscriptions
from services.notify.channels import build_channels
from services.notify.outbox import deliver_due
from services.notify.rules import NotificationRules
from services.notify.settings import load as load_settings

log = logging.getLogger("minqing.notify")
SENT = Counter("minqing_notify_delivered_total", "Notifications delivered by the outbox")
WEBHOOKS = Counter("minqing_notify_webhook_deliveries_total", "Events delivered to webhook subscribers")
ROUND = Histogram("minqing_notify_round_seconds", "Duration of one notify work round")
IDLE_PAUSE_SECONDS = 4.0      # the longest pause between rounds of an idle loop (issue #16: idle is idle)


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
        self.container.spawn_managed_thread(lambda: self._loop(NotificationRules.event_types, (
            ("deliver", lambda: SENT.inc(deliver_due(ledger, vault, self.channels, SYSTEM_CLOCK,
                                                     max_attempts=s.max_attempts, backoff_seconds=s.backoff_seconds,
                                                     lease=timedelta(seconds=s.lease_seconds)))),
            ("follow-up", lambda: followup.advance(ledger, SYSTEM_CLOCK)),
            ("announce", lambda: announcements.announce(ledger, SYSTEM_CLOCK)),
        )), identifier="notify-outbox")
        self.container.spawn_managed_thread(lambda: self._loop(None, (
            ("webhooks", lambda: WEBHOOKS.inc(subscriptions.deliver_round(ledger, vault, SYSTEM_CLOCK,
                                                                          timeout=s.webhook_timeout))),
        )), identifier="notify-webhooks")

    def stop(self):
        self._running = False

    kill = stop

    def _loop(self, types, steps):
        """Rounds every MINQING_NOTIFY_SECONDS while the ledger moves; on PostgreSQL, when appends of
        `types` stop, the pause doubles up to idle_pause (a due retry or 回访 waits at most that long)
        and an append wakes the loop at once (minqing.ledger_listen). Demo clocks keep the short pause."""
        woken = threading.Event()
        listening = ledger_listen.subscribe(self.ledger_provider.ledger.engine, woken.set, types)
        idle_pause = self.settings.interval if not listening or demo_clock_configured() else \
            max(self.settings.interval, IDLE_PAUSE_SECONDS)
        pause = self.settings.interval
        try:
            while self._running:
                started = time.perf_counter()
                for name, step in steps:
                    try:
                        step()
                    except Exception:
                        log.exception("notify %s step failed; retrying next round", name)
                ROUND.observe(time.perf_counter() - started)
                if woken.wait(pause):
                    # a busy ledger wakes us at every append: still at most one round per interval
                    pause = self.settings.interval
                    rest = pause - (time.perf_counter() - started)
                    if rest > 0:
                        time.sleep(rest)
                else:
                    pause = min(pause * 2, idle_pause)
                woken.clear()
        finally:
            ledger_listen.unsubscribe(self.ledger_provider.ledger.engine, woken.set)

    def get_dependency(self, worker_ctx):
        return self
