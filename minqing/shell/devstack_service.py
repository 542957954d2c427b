"""The base of the development stack's private services: start, wait, stop, the atexit safety net
(part of minqing.shell.devstack, which documents the whole)."""
from __future__ import annotations

import atexit
import errno
import fcntl
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Sequence

from minqing.shell.devstack_proc import DevStackError, _RunAs, _handed_out_ports, _port_is_free, free_port  # noqa: F401

log = logging.getLogger("minqing.devstack")

# ---- common machinery ------------------------------------------------------------

_running: "set[_Service]" = set()
_running_lock = threading.Lock()
_atexit_registered = False


def _stop_all_at_exit() -> None:
    with _running_lock:
        services = list(_running)
    for service in services:
        try:
            service.stop(timeout=15)
        except Exception as exc:  # never let atexit blow up; at worst kill
            log.warning("devstack: stopping %s at exit failed: %s", service, exc)
            try:
                service.kill()
            except Exception:
                pass


def _register(service: "_Service") -> None:
    global _atexit_registered
    with _running_lock:
        if not _atexit_registered:
            atexit.register(_stop_all_at_exit)
            _atexit_registered = True
        _running.add(service)


def _unregister(service: "_Service") -> None:
    with _running_lock:
        _running.discard(service)


class _Service:
    """Shared lifecycle: directory lock, process group handling, context manager."""

    kind = "service"
    system_user = ""

    def __init__(self, base_dir: str | os.PathLike, port: int | None, startup_timeout: float):
        self.base_dir = Path(base_dir).expanduser().absolute()
        self.dir = self.base_dir / self.kind
        self.startup_timeout = startup_timeout
        self._requested_port = port
        self._port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._lock_fd: int | None = None
        self._run_as: _RunAs | None = None
        self.on_spawn = None   # called with the pid (= process group) of every process started

    # -- public ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise DevStackError(f"{self} has not been started")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self):
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "-"
        return f"<{type(self).__name__} {self.dir} port={port}>"

    def start(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def kill(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- helpers for subclasses --------------------------------------------------------------
    def _prepare(self) -> _RunAs:
        """Create and lock self.dir, decide the user and the port."""
        if self._run_as is None:
            self._run_as = _RunAs(self.system_user)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        if self._port is None:
            self._port = self._choose_port()
        return self._run_as

    def _acquire_lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.dir / ".devstack.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise DevStackError(f"{self.dir} is in use by another devstack instance") from None
            raise
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _choose_port(self) -> int:
        """The requested port; else the one used last time in this directory if it is free
        (stable URLs for `make run`, and RabbitMQ's node name/Mnesia dir depend on it);
        else a fresh free port."""
        state = self.dir / "port"
        if self._requested_port:
            port = self._requested_port
            if not _port_is_free(port):
                raise DevStackError(f"127.0.0.1:{port} is already in use")
        else:
            port = None
            try:
                last = int(state.read_text().strip())
                if _port_is_free(last):
                    port = last
                    _handed_out_ports.add(last)
            except (OSError, ValueError):
                pass
            port = port or free_port()
        state.write_text(f"{port}\n")
        return port

    def _spawn(self, argv: list[str], env: dict[str, str], logfile: Path,
               cwd: Path) -> subprocess.Popen:
        """Start argv in its own session/process group as the service user, output to logfile."""
        with self._open_log(logfile) as out:
            try:
                proc = subprocess.Popen(
                    argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    **self._run_as.popen_kwargs(),
                )
            except FileNotFoundError as exc:
                raise DevStackError(f"{exc.filename} not found; run "
                                    f"`python -m minqing.shell.devstack check`") from None
        if self.on_spawn is not None:
            self.on_spawn(proc.pid)
        return proc

    def _open_log(self, path: Path):
        """Open a log file for appending, owned by the service user."""
        out = open(path, "ab")
        if self._run_as is not None and self._run_as.switch:
            os.fchown(out.fileno(), self._run_as.uid, self._run_as.gid)
        return out

    @staticmethod
    def _signal_group(proc: subprocess.Popen | None, sig: int) -> None:
        if proc is None:
            return
        try:
            os.killpg(proc.pid, sig)  # pgid == pid thanks to start_new_session
        except ProcessLookupError:
            pass

    @staticmethod
    def _signal(proc: subprocess.Popen | None, sig: int) -> None:
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass

    @staticmethod
    def _wait(proc: subprocess.Popen | None, timeout: float) -> bool:
        if proc is None:
            return True
        try:
            proc.wait(timeout=max(0.0, timeout))
            return True
        except subprocess.TimeoutExpired:
            return False

    def _descendants(self, pid: int) -> list[int]:
        """PIDs of all descendants of `pid` (Linux /proc; [] elsewhere).

        Needed because helpers do not stay in our process group: PostgreSQL's backends and
        Erlang's port programs (erl_child_setup, inet_gethost, ...) call setsid()."""
        children: dict[int, list[int]] = {}
        try:
            entries = os.listdir("/proc")
        except OSError:
            return []
        for name in entries:
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
        found, todo = [], [pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def _alive_ours(self, pid: int) -> bool:
        """True if `pid` exists, is not a zombie and belongs to the service user."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            uid = os.stat(f"/proc/{pid}").st_uid
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and (self._run_as is None or uid == self._run_as.uid)

    def _reap(self, proc: subprocess.Popen | None, descendants: Sequence[int] = (),
              grace: float = 5.0) -> None:
        """Make sure `proc` and `descendants` are gone: SIGKILL `proc`'s process group if it is
        still running, give the descendants `grace` seconds to exit on their own (they do once
        their parent is gone), then SIGKILL the stragglers."""
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGKILL)
            grace = 0.0
        self._wait(proc, 10)
        deadline = time.monotonic() + grace
        pending = [pid for pid in descendants if self._alive_ours(pid)]
        while pending and time.monotonic() < deadline:
            time.sleep(0.05)
            pending = [pid for pid in pending if self._alive_ours(pid)]
        for pid in pending:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _kill_tree(self, proc: subprocess.Popen | None) -> None:
        """SIGKILL `proc`, its process group and all its descendants (a simulated crash)."""
        if proc is None:
            return
        descendants = self._descendants(proc.pid)
        self._signal_group(proc, signal.SIGKILL)
        self._reap(proc, descendants, grace=0.0)


