"""Routing's timer sweep as a nameko dependency of RoutingService: services/routing/sweep.py every
MINQING_SWEEP_SECONDS in a managed thread, with its metrics."""
from __future__ import annotations

import logging
import time

from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Histogram

from minqing.clock import SYSTEM_CLOCK
from minqing.config import load as load_settings
from minqing.service_kit import LedgerProvider
from services.routing.sweep import Sweeper

log = logging.getLogger("minqing.routing")
SWEEP_SECONDS = Histogram("minqing_routing_sweep_seconds", "Duration of one timer sweep")
SWEEP_EVENTS = Counter("minqing_routing_timer_events_total", "Events appended by the timer sweep")
SWEEP_CONFLICTS = Counter("minqing_routing_timer_conflicts_total", "Due cases that moved while the sweep decided")


class Sweeping(DependencyProvider):
    """Runs the timer sweep every MINQING_SWEEP_SECONDS in a managed thread."""

    def setup(self):
        provider = next(d for d in self.container.dependencies if isinstance(d, LedgerProvider))
        self.sweeper = Sweeper(provider.ledger, SYSTEM_CLOCK)
        self.interval = load_settings().sweep_seconds
        self._running = False

    def start(self):
        self._running = True
        self.container.spawn_managed_thread(self._loop, identifier="routing-sweep")

    def stop(self):
        self._running = False

    kill = stop

    def _loop(self):
        while self._running:
            started = time.perf_counter()
            try:
                result = self.sweeper.sweep()
                SWEEP_EVENTS.inc(result.appended)
                SWEEP_CONFLICTS.inc(result.conflicts)
            except Exception:
                log.exception("timer sweep failed; retrying")
            SWEEP_SECONDS.observe(time.perf_counter() - started)
            time.sleep(self.interval)

    def get_dependency(self, worker_ctx):
        return self.sweeper
