"""Progress of long CLI commands (report, consumer rebuild, audit verify) on stderr (issue #18.8b).

On a terminal, one line rewritten in place (`\\r`); otherwise (a pipe, a log file, cron) plain lines,
at most one every `every_seconds`, so logs stay short. Nothing goes to stdout: what a command prints
there stays what scripts parse.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None, every_seconds: float = 5.0, clock=time.monotonic):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 0.1 if self.tty else every_seconds
        self._clock = clock
        self._last = None
        self._width = 0

    def _write(self, text: str, final: bool = False) -> None:
        line = f"{self.label}: {text}"
        if self.tty:
            pad = max(self._width - len(line), 0)
            self._width = len(line)
            self.stream.write("\r" + line + " " * pad + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def step(self, text: str) -> None:
        """A named stage (always shown)."""
        self._last = self._clock()
        self._write(text)

    def update(self, done: int, total: int | None = None, unit: str = "events") -> None:
        """A count, shown when enough time has passed since the last line."""
        now = self._clock()
        if self._last is not None and now - self._last < self.every:
            return
        self._last = now
        if total:
            self._write(f"{done}/{total} {unit} ({100 * done // total}%)")
        else:
            self._write(f"{done} {unit}")

    def done(self, text: str = "done") -> None:
        self._write(text, final=True)


class ReadProgress:
    """A ledger seen through its reads: `read_all` batches report how far a replay has come.
    Everything else is the ledger's own."""

    def __init__(self, ledger, progress: Progress):
        self._ledger, self._progress = ledger, progress
        try:
            self._head = ledger.head()[0]
        except Exception:
            self._head = None

    def replayed(self, position: int) -> None:
        """A fast replay (minqing.replay) reached `position`."""
        self._progress.update(position, self._head)

    def read_all(self, *args, **kwargs):
        events = self._ledger.read_all(*args, **kwargs)
        if events:
            self._progress.update(events[-1].position, self._head)
        return events

    def __getattr__(self, name):
        return getattr(self._ledger, name)
