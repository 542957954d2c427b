"""Run CPU-heavy work (PIN hashing) off a service's eventlet hub.

A nameko service is one OS thread running many green threads: a 5 ms computation on it stalls every
request in flight, and any that holds a database lock (a report's tracking counter, the ledger head)
holds it 5 ms longer. In a monkey-patched process the work goes to eventlet's thread pool (hashlib's
PBKDF2 releases the GIL, so it truly runs alongside); elsewhere (the CLI, tests) it simply runs.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")


def offload(fn: Callable[..., T], *args: Any) -> T:
    try:
        from eventlet import patcher, tpool
    except ImportError:      # pragma: no cover - eventlet comes with nameko
        return fn(*args)
    if patcher.is_monkey_patched("thread"):
        return tpool.execute(fn, *args)
    return fn(*args)
