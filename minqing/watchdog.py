"""Children die with their supervisor, even when the supervisor is killed with SIGKILL.

`minqing run` starts this watchdog first, in its own session, reading a pipe whose write end only the
supervisor holds. The supervisor writes one line per process group it starts (`+<pgid>`) and per group
it has stopped itself (`-<pgid>`). End of file on the pipe means the supervisor is gone, however it went:
the watchdog then stops every group still recorded — SIGTERM, and SIGKILL after a grace period — together
with the descendants that left their group (Erlang's helpers and PostgreSQL's backends call setsid()).

Why not PR_SET_PDEATHSIG: the private RabbitMQ node runs as the rabbitmq user (the change of credentials
clears the parent-death signal), its helpers start their own sessions, and the signal follows the thread
that forked rather than the process. A pipe's end of file has none of these gaps.

Only the standard library is used; the module must start in a fraction of a second.
"""
from __future__ import annotations

import os
import signal
import sys
import time

GRACE_SECONDS = 10.0


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) for every live (non-zombie) process, from /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] in ("Z", "X"):
            continue
        out[int(name)] = (int(fields[1]), int(fields[2]))
    return out


def members(groups: set[int]) -> set[int]:
    """Every live process in `groups`, and every live descendant of those, wherever its group."""
    procs = _processes()
    found = {pid for pid, (_, pgid) in procs.items() if pgid in groups}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _send(pids: set[int], groups: set[int], sig: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_groups(groups: set[int], grace: float = GRACE_SECONDS) -> set[int]:
    """SIGTERM `groups` and their descendants, SIGKILL what is left after `grace` seconds; return the
    pids that had to be killed."""
    targets = members(groups) - {os.getpid()}
    if not targets:
        return set()
    _send(targets, groups, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        alive = targets & set(_processes())
        if not alive:
            return set()
        time.sleep(0.1)
    stragglers = (members(groups) | (targets & set(_processes()))) - {os.getpid()}
    _send(stragglers, groups, signal.SIGKILL)
    return stragglers


def watch(stream) -> set[int]:
    """Read `+pgid` / `-pgid` / `clear` lines until end of file; return the groups still recorded."""
    groups: set[int] = set()
    for raw in stream:
        line = raw.strip()
        if line == b"clear":
            groups.clear()
        elif line[:1] in (b"+", b"-") and line[1:].isdigit():
            (groups.add if line[:1] == b"+" else groups.discard)(int(line[1:]))
    return groups


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # a terminal's Ctrl-C is the supervisor's to handle
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups = watch(sys.stdin.buffer)
    if groups:
        print(f"minqing watchdog: the supervisor is gone; stopping process groups {sorted(groups)}", flush=True)
        killed = stop_groups(groups)
        if killed:
            print(f"minqing watchdog: killed {sorted(killed)} after {GRACE_SECONDS:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
