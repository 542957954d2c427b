"""Private, throw-away RabbitMQ and PostgreSQL instances for development, tests and benchmarks.

`make run`, the test suite and the benchmarks need a broker and a database, but must never touch
whatever RabbitMQ (5672) or PostgreSQL (5432) the machine may already run, nor their default
directories.  This module starts *private* instances:

* they listen on 127.0.0.1 only, on free ports (`free_port()`), never on the default ones;
* all their state (data, logs, config, Erlang cookie, sockets) lives in a sub-directory of a
  directory the caller chooses (`<dir>/rabbitmq/`, `<dir>/postgres/`);
* they are children of the calling Python process, each in its own process group, and are
  stopped on `stop()`, when a `with` block ends, or - as a safety net - at interpreter exit
  (`atexit`).  A process killed with SIGKILL cannot clean up itself; `on_spawn` tells a watchdog
  (minqing.watchdog, as `minqing run` uses) each process group, so that it can.

Typical use::

    from minqing.shell.devstack import PostgreSQL, RabbitMQ

    with RabbitMQ(tmp / "mq") as mq, PostgreSQL(tmp / "pg", durable=False) as pg:
        connect_amqp(mq.uri)           # pyamqp://guest:guest@127.0.0.1:<port>//
        engine = create_engine(pg.url)  # postgresql+psycopg://postgres@127.0.0.1:<port>/minqing
        mq.restart()                    # broker restart; durable queues survive
        fresh = pg.create_database("test_xyz")

Command line (foreground; prints the URI/URL on stdout, stops cleanly on Ctrl-C/SIGTERM)::

    python -m minqing.shell.devstack rabbitmq --dir .run/devstack [--port N]
    python -m minqing.shell.devstack postgres --dir .run/devstack [--port N] [--no-durable]
    python -m minqing.shell.devstack check     # which binaries are missing, and the apt-get command

Running as root
---------------
`rabbitmq-server` is meant to run as the `rabbitmq` user and `initdb`/`postgres` refuse to run as
root, so when the calling process is root the servers run as the `rabbitmq` and `postgres` system
users (created by the Debian packages) via `subprocess.Popen(user=..., group=...)` - the same thing
`runuser -u USER --` does, without an intermediate process.  Their directories are chowned to
that user, and every ancestor of the instance directory that the user could not traverse gets
the "search" bit for others (`chmod o+x`, no read permission is added).  When not root, the
servers run as the current user and nothing is chowned.

RabbitMQ details
----------------
* Binaries: Debian's `/usr/lib/rabbitmq/bin/rabbitmq-server` (not the `/usr/sbin` wrapper, which
  insists on `/var/lib/rabbitmq` and `/var/log/rabbitmq`).  Override the directory with
  `$MINQING_RABBITMQ_BIN`.
* Node name `minqing-<port>@localhost`; the AMQP listener is 127.0.0.1:<port>; the Erlang
  distribution listener is a separate free port, also bound to 127.0.0.1 only.
* A private `epmd` (Erlang port mapper) on a free loopback port (`ERL_EPMD_PORT`) is started
  for each instance and stopped with it.  Without it, the first Erlang node starts a shared,
  daemonised epmd on 0.0.0.0:4369 that outlives everything (and is shared with the system
  RabbitMQ, if there is one).
* Private config (`rabbitmq.conf`, an empty `conf.d`, an empty `advanced.config`, an empty
  `rabbitmq-env.conf`), an enabled-plugins file with *no* plugins (so no management listener on
  15672), private Mnesia/log directories, and a private `$HOME` holding the `.erlang.cookie`
  that both the server and the `rabbitmqctl` calls made by `RabbitMQ.ctl()` use.
* The node counts as started when a real AMQP connection to it (guest/guest, vhost "/")
  opens; listeners are opened at the very end of the boot sequence.  guest/guest works
  because clients connect over loopback.
* `restart()` is a graceful stop + start on the same directory and ports (durable queues and
  persistent messages survive); `restart(abrupt=True)` SIGKILLs the node first, like a crash.

PostgreSQL details
------------------
* Binaries: `/usr/lib/postgresql/<N>/bin` (15 preferred, else the newest), `$MINQING_PG_BIN`
  overrides, else `pg_config --bindir`/`$PATH`.
* `initdb -U postgres -E UTF8 --auth=trust` (superuser `postgres`, no password; `pg_hba.conf`
  only lists local sockets and 127.0.0.1/::1), run once: an existing data directory is reused,
  so `make run` keeps its data between runs.
* `postgres -D <data> -c listen_addresses=127.0.0.1 -p <port> -k <private socket dir>`; with
  `durable=False` also `-c fsync=off -c synchronous_commit=off -c full_page_writes=off`.
* Database `minqing` is created if missing; `create_database()` makes more.
* Ready means `postmaster.pid` says "ready" and the port accepts a connection.
* Stop: SIGINT ("fast" shutdown: disconnects clients, checkpoints), then SIGQUIT, then SIGKILL.

Only the standard library is used, so this module can run before the virtualenv exists.
"""
from __future__ import annotations

import argparse
import atexit
import errno
import fcntl
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

__all__ = [
    "DevStackError",
    "PostgreSQL",
    "RabbitMQ",
    "free_port",
    "missing_binaries",
    "install_command",
]

log = logging.getLogger("minqing.devstack")

LOOPBACK = "127.0.0.1"
APT_PACKAGES = ("rabbitmq-server", "postgresql-15")


class DevStackError(RuntimeError):
    """A private service could not be prepared, started or stopped."""


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

_handed_out_ports: set[int] = set()
_port_lock = threading.Lock()


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on `host` (127.0.0.1) that nothing listens on right now.

    The kernel picks it (bind to port 0).  There is an unavoidable window between this call and
    the server binding the port; this function never returns the same port twice in one
    process, so instances started from one process (even concurrently) cannot collide.
    """
    with _port_lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise DevStackError("could not find a free TCP port on 127.0.0.1")


def _port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _can_connect(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(paths: Iterable[Path], lines: int = 40) -> str:
    """The last `lines` lines of each existing file, for error messages."""
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        tail = "\n".join(text.splitlines()[-lines:])
        if tail.strip():
            out.append(f"--- last lines of {path} ---\n{tail}")
    return "\n".join(out) if out else "(no log output)"


class _RunAs:
    """Who a server runs as: a system user when we are root, else ourselves."""

    def __init__(self, system_user: str):
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(system_user)
            except KeyError:
                raise DevStackError(
                    f"running as root, but there is no {system_user!r} system user to run the "
                    f"server as; install the Debian package ({install_command()})"
                ) from None
            self.switch = True
        else:
            pw = pwd.getpwuid(os.geteuid())
            self.switch = False
        self.name = pw.pw_name
        self.uid = pw.pw_uid
        self.gid = pw.pw_gid
        self.groups = set(os.getgrouplist(pw.pw_name, pw.pw_gid))

    def popen_kwargs(self) -> dict:
        """Keyword arguments for subprocess.Popen/run that drop privileges (like `runuser -u`)."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": sorted(self.groups)}

    def can_traverse(self, st: os.stat_result) -> bool:
        if self.uid == 0:
            return True
        if st.st_uid == self.uid:
            return bool(st.st_mode & stat.S_IXUSR)
        if st.st_gid in self.groups:
            return bool(st.st_mode & stat.S_IXGRP)
        return bool(st.st_mode & stat.S_IXOTH)

    def make_reachable(self, path: Path) -> None:
        """Add o+x to every ancestor of `path` this user cannot traverse."""
        if not self.switch:
            return
        for parent in reversed(path.resolve().parents):
            st = parent.stat()
            if not self.can_traverse(st):
                log.info("chmod o+x %s so that %s can reach %s", parent, self.name, path)
                os.chmod(parent, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)

    def own(self, root: Path) -> None:
        """chown -R `root` to this user (only when we switched users)."""
        if not self.switch:
            return
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                st = os.lstat(name)
                if st.st_uid != self.uid or st.st_gid != self.gid:
                    os.lchown(name, self.uid, self.gid)


def _clean_env(drop_prefixes: Sequence[str], **extra: str) -> dict[str, str]:
    # NOTIFY_SOCKET: under systemd, children would otherwise notify *our* unit.
    drop = (*drop_prefixes, "NOTIFY_SOCKET")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    path = env.get("PATH", "")
    for p in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if p not in path.split(":"):
            path = f"{path}:{p}" if path else p
    env["PATH"] = path
    env.setdefault("LANG", "C.UTF-8")
    env["LC_ALL"] = "C.UTF-8"
    env.update(extra)
    return env


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    path.write_text(text)


# --------------------------------------------------------------------------------------------
# binaries
# --------------------------------------------------------------------------------------------

def _rabbitmq_bin_dir() -> Path | None:
    override = os.environ.get("MINQING_RABBITMQ_BIN")
    candidates = [Path(override)] if override else []
    candidates.append(Path("/usr/lib/rabbitmq/bin"))  # Debian/Ubuntu package
    found = shutil.which("rabbitmq-server")
    if found and Path(found).resolve() != Path("/usr/sbin/rabbitmq-server"):
        candidates.append(Path(found).resolve().parent)  # generic-unix tarball, Homebrew, ...
    for d in candidates:
        if (d / "rabbitmq-server").is_file() and (d / "rabbitmqctl").is_file():
            return d
    return None


def _pg_bin_dir() -> Path | None:
    override = os.environ.get("MINQING_PG_BIN")
    candidates = [Path(override)] if override else []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        def version(p: Path) -> tuple[int, ...]:
            return tuple(int(x) for x in re.findall(r"\d+", p.name)) or (0,)
        versions = sorted((p for p in debian.iterdir() if p.name[:1].isdigit()), key=version)
        preferred = [p for p in versions if p.name == "15"]
        candidates += [p / "bin" for p in preferred + versions[::-1]]
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
            if out:
                candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    for d in candidates:
        if all((d / b).is_file() for b in ("initdb", "postgres", "psql")):
            return d
    return None


def missing_binaries() -> list[tuple[str, str]]:
    """[(what is missing, Debian package providing it)], empty if everything is installed."""
    missing: list[tuple[str, str]] = []
    rabbit = _rabbitmq_bin_dir()
    if rabbit is None:
        missing.append(("rabbitmq-server, rabbitmqctl (/usr/lib/rabbitmq/bin)", "rabbitmq-server"))
    for tool in ("erl", "epmd"):
        if not shutil.which(tool, path=_clean_env(())["PATH"]):
            missing.append((tool, "rabbitmq-server"))  # pulls in erlang-base
    pg = _pg_bin_dir()
    if pg is None:
        missing.append(("initdb, postgres, psql (/usr/lib/postgresql/15/bin)", "postgresql-15"))
    if os.geteuid() == 0:
        for user, package in (("rabbitmq", "rabbitmq-server"), ("postgres", "postgresql-15")):
            try:
                pwd.getpwnam(user)
            except KeyError:
                missing.append((f"system user {user!r}", package))
    return missing


def install_command(packages: Iterable[str] = APT_PACKAGES) -> str:
    """The apt-get command that installs `packages` (with sudo unless we are root)."""
    sudo = "" if os.geteuid() == 0 else "sudo "
    pkgs = " ".join(dict.fromkeys(packages))
    return (f"{sudo}apt-get update && {sudo}env DEBIAN_FRONTEND=noninteractive "
            f"apt-get install -y --no-install-recommends {pkgs}")


# --------------------------------------------------------------------------------------------
# common machinery
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# RabbitMQ
# --------------------------------------------------------------------------------------------

_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def _shortstr(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw


def _amqp_handshake(port: int, timeout: float = 2.0) -> bool:
    """True if 127.0.0.1:port completes an AMQP 0-9-1 session as guest/guest on vhost "/".

    Open and close a real connection (the connection.* methods only, no library needed), so
    the broker is really usable and logs a normal open/close instead of a warning about a
    client that hung up in the middle of the handshake."""

    def read_method(sock: socket.socket, buf: bytearray) -> tuple[int, int, bytes]:
        while True:
            while len(buf) < 7 or len(buf) < 8 + int.from_bytes(buf[3:7], "big"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed by broker")
                buf += chunk
            ftype, size = buf[0], int.from_bytes(buf[3:7], "big")
            payload = bytes(buf[7:7 + size])
            del buf[:8 + size]
            if ftype == 1:  # method frame; skip heartbeats etc.
                return (int.from_bytes(payload[0:2], "big"), int.from_bytes(payload[2:4], "big"),
                        payload[4:])

    def send_method(sock: socket.socket, class_id: int, method_id: int, args: bytes) -> None:
        payload = class_id.to_bytes(2, "big") + method_id.to_bytes(2, "big") + args
        sock.sendall(b"\x01\x00\x00" + len(payload).to_bytes(4, "big") + payload + b"\xce")

    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            buf = bytearray()
            sock.sendall(_AMQP_HEADER)
            if read_method(sock, buf)[:2] != (10, 10):  # connection.start
                return False
            response = b"\x00guest\x00guest"
            send_method(sock, 10, 11, b"\x00\x00\x00\x00" + _shortstr("PLAIN")  # start-ok
                        + len(response).to_bytes(4, "big") + response + _shortstr("en_US"))
            class_id, method_id, args = read_method(sock, buf)
            if (class_id, method_id) != (10, 30):  # connection.tune
                return False
            send_method(sock, 10, 31, args[:6] + b"\x00\x00")  # tune-ok, no heartbeats
            send_method(sock, 10, 40, _shortstr("/") + _shortstr("") + b"\x00")  # open
            if read_method(sock, buf)[:2] != (10, 41):  # open-ok
                return False
            send_method(sock, 10, 50, b"\x00\xc8" + _shortstr("") + b"\x00\x00\x00\x00")  # close
            read_method(sock, buf)  # close-ok
            return True
    except (OSError, ValueError):
        return False


def _epmd_answers(port: int, timeout: float = 1.0) -> bool:
    """True if an epmd on 127.0.0.1:port answers a NAMES request (a bare connect would make
    it log "got partial packet")."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
            s.sendall(b"\x00\x01n")  # length 1, NAMES_REQ
            return len(s.recv(4)) > 0
    except OSError:
        return False


class RabbitMQ(_Service):
    """A private RabbitMQ node on 127.0.0.1 with its state under `<base_dir>/rabbitmq/`.

    :param base_dir: directory for this instance's state (created if missing).  One running
        instance per directory (enforced with a lock file).
    :param port: AMQP port; default: the port used last time in this directory if it is still
        free, else a free port.  (The node name and Mnesia directory depend on the port, so
        a stable port is what keeps durable queues between `make run` sessions.)
    :param startup_timeout: seconds to wait for the node to accept AMQP connections.
    :param config: extra lines appended to the generated `rabbitmq.conf` (new-style syntax).
    """

    kind = "rabbitmq"
    system_user = "rabbitmq"

    def __init__(self, base_dir: str | os.PathLike, port: int | None = None, *,
                 startup_timeout: float = 90.0, config: str = "", on_spawn=None):
        super().__init__(base_dir, port, startup_timeout)
        self.extra_config = config
        self.on_spawn = on_spawn   # e.g. `minqing run`'s watchdog, which stops the node if run dies
        self.dist_port: int | None = None
        self.epmd_port: int | None = None
        self._epmd: subprocess.Popen | None = None
        self._bin: Path | None = None
        self.home = self.dir / "home"
        self.etc = self.dir / "etc"
        self.log_dir = self.dir / "log"
        self.mnesia_base = self.dir / "mnesia"
        self.startup_seconds: float | None = None

    # -- public ------------------------------------------------------------------------------
    @property
    def node(self) -> str:
        """Erlang node name, e.g. ``minqing-41234@localhost``."""
        return f"minqing-{self.port}@localhost"

    @property
    def uri(self) -> str:
        """Kombu/nameko AMQP URI: ``pyamqp://guest:guest@127.0.0.1:<port>//``."""
        return f"pyamqp://guest:guest@{LOOPBACK}:{self.port}//"

    @property
    def amqp_url(self) -> str:
        """The same as `uri` with the plain ``amqp://`` scheme (pika, aio-pika, ...)."""
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}/%2F"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.node.split('@')[0]}.log"

    @property
    def console_log(self) -> Path:
        return self.log_dir / "console.log"

    def start(self) -> "RabbitMQ":
        """Start the node (and its private epmd); return once it accepts AMQP connections."""
        if self.is_running():
            return self
        t0 = time.monotonic()
        self._bin = _rabbitmq_bin_dir()
        if self._bin is None:
            raise DevStackError("RabbitMQ is not installed (no /usr/lib/rabbitmq/bin/"
                                f"rabbitmq-server); run: {install_command()}")
        run_as = self._prepare()
        try:
            if self.dist_port is None:
                self.dist_port = free_port()
            if self.epmd_port is None:
                self.epmd_port = free_port()
            self._write_files()
            run_as.make_reachable(self.dir)
            run_as.own(self.dir)
            if self._epmd is None or self._epmd.poll() is not None:
                self._start_epmd()
            self._proc = self._spawn([str(self._bin / "rabbitmq-server")], self._env(),
                                     self.console_log, cwd=self.home)
            _register(self)
            self._wait_until_ready()
        except BaseException:
            self._teardown(graceful=False)
            raise
        self.startup_seconds = time.monotonic() - t0
        log.info("RabbitMQ %s ready on %s in %.1fs", self.node, self.uri, self.startup_seconds)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (`rabbitmqctl stop`, then SIGTERM), SIGKILL if it takes too long.
        Also stops the private epmd.  Idempotent."""
        self._teardown(graceful=True, timeout=timeout)

    def kill(self) -> None:
        """Stop abruptly: SIGKILL the node (and epmd), like a crash."""
        self._teardown(graceful=False)

    def restart(self, abrupt: bool = False, timeout: float = 30.0) -> "RabbitMQ":
        """Stop the node (gracefully, or with SIGKILL if `abrupt`) and start it again on the
        same directory and ports.  Durable queues and persistent messages survive a graceful
        restart; after an abrupt one, messages that were confirmed (publisher confirms) do."""
        if abrupt:
            self._kill_node()
        else:
            self._stop_node(timeout)
        return self.start()

    def ctl(self, *args: str, timeout: float = 60.0, check: bool = True
            ) -> subprocess.CompletedProcess:
        """Run ``rabbitmqctl -n <node> ARGS...`` against this node (same cookie, same epmd)."""
        if self._bin is None or self._run_as is None:
            raise DevStackError(f"{self} has not been started")
        result = subprocess.run(
            [str(self._bin / "rabbitmqctl"), "-n", self.node, *args],
            env=self._env(), cwd=self.home, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=timeout, **self._run_as.popen_kwargs(),
        )
        if check and result.returncode != 0:
            raise DevStackError(f"rabbitmqctl {' '.join(args)} failed ({result.returncode}):\n"
                                f"{result.stdout}{result.stderr}")
        return result

    def log_tail(self, lines: int = 40) -> str:
        return _tail([self.console_log, self.log_file, self.log_dir / "epmd.log"], lines)

    # -- internals ---------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        assert self._run_as is not None
        name = self.node.split("@")[0]
        interface = "-kernel inet_dist_use_interface {127,0,0,1}"
        return _clean_env(
            ("RABBITMQ_", "ERL_", "ERLANG_"),
            HOME=str(self.home), USER=self._run_as.name, LOGNAME=self._run_as.name,
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_USE_LONGNAME="false",
            RABBITMQ_NODE_IP_ADDRESS=LOOPBACK,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONF_ENV_FILE=str(self.etc / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.etc / "rabbitmq.conf"),
            RABBITMQ_CONFIG_FILES=str(self.etc / "conf.d"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.etc / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.etc / "enabled_plugins"),
            RABBITMQ_MOTD_FILE=str(self.etc / "motd"),
            RABBITMQ_MNESIA_BASE=str(self.mnesia_base),
            RABBITMQ_LOG_BASE=str(self.log_dir),
            RABBITMQ_LOGS=str(self.log_file),
            RABBITMQ_PID_FILE=str(self.dir / f"{name}.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=interface,
            RABBITMQ_CTL_ERL_ARGS=interface,
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS=LOOPBACK,
            ERL_CRASH_DUMP=str(self.log_dir / "erl_crash.dump"),
            # Makes the rabbitmq-server script `exec` the Erlang VM instead of running it in
            # the background behind a signal-forwarding shell: our child *is* the node, so
            # SIGTERM reaches it directly (RabbitMQ treats it as a graceful stop) and a
            # SIGKILL leaves no orphan.  Harmless if a future script ignores it.
            detached="1",
        )

    def _write_files(self) -> None:
        for d in (self.home, self.etc, self.etc / "conf.d", self.log_dir, self.mnesia_base):
            d.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            # Erlang refuses cookie files readable by anyone but the owner.
            fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write("".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(32)))
        _write_if_changed(self.etc / "rabbitmq-env.conf", "# intentionally empty (devstack)\n")
        _write_if_changed(self.etc / "advanced.config", "[].\n")
        _write_if_changed(self.etc / "enabled_plugins", "[].\n")  # no plugins, no 15672
        _write_if_changed(self.etc / "rabbitmq.conf", "\n".join([
            "# generated by minqing.shell.devstack; rewritten on every start",
            f"listeners.tcp.default = {LOOPBACK}:{self.port}",
            "loopback_users.guest = true",
            "log.console = false",
            "log.file.level = info",
            "disk_free_limit.absolute = 50MB",
            self.extra_config,
            "",
        ]))

    def _start_epmd(self) -> None:
        epmd = shutil.which("epmd", path=_clean_env(())["PATH"])
        if epmd is None:
            raise DevStackError(f"epmd (Erlang) not found; run: {install_command()}")
        self._epmd = self._spawn([epmd, "-port", str(self.epmd_port), "-address", LOOPBACK],
                                 self._env(), self.log_dir / "epmd.log", cwd=self.home)
        deadline = time.monotonic() + 10
        while not _epmd_answers(self.epmd_port):
            if self._epmd.poll() is not None or time.monotonic() > deadline:
                raise DevStackError(f"private epmd on 127.0.0.1:{self.epmd_port} did not start"
                                    f"\n{_tail([self.log_dir / 'epmd.log'])}")
            time.sleep(0.05)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise DevStackError(f"RabbitMQ {self.node} exited with status {code} while "
                                    f"starting\n{self.log_tail()}")
            if _amqp_handshake(self.port):
                return
            if time.monotonic() > deadline:
                raise DevStackError(f"RabbitMQ {self.node} did not accept AMQP connections on "
                                    f"127.0.0.1:{self.port} within {self.startup_timeout:.0f}s"
                                    f"\n{self.log_tail()}")
            time.sleep(0.2)

    def _stop_node(self, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        deadline = time.monotonic() + timeout
        descendants = self._descendants(proc.pid)
        if proc.poll() is None:
            try:
                self.ctl("stop", timeout=max(5.0, timeout / 2), check=False)
            except (subprocess.SubprocessError, OSError, DevStackError) as exc:
                log.warning("rabbitmqctl stop failed: %s", exc)
            if not self._wait(proc, min(5.0, deadline - time.monotonic())):
                # RabbitMQ treats SIGTERM as a graceful shutdown too.
                self._signal(proc, signal.SIGTERM)
                if not self._wait(proc, deadline - time.monotonic()):
                    log.warning("RabbitMQ %s did not stop within %.0fs; killing it",
                                self.node, timeout)
        self._reap(proc, descendants)
        self._proc = None

    def _kill_node(self) -> None:
        self._kill_tree(self._proc)
        self._proc = None

    def _teardown(self, graceful: bool, timeout: float = 30.0) -> None:
        try:
            if graceful:
                self._stop_node(timeout)
            else:
                self._kill_node()
        finally:
            if self._epmd is not None:
                self._signal(self._epmd, signal.SIGTERM)
                self._wait(self._epmd, 5)
                self._reap(self._epmd)
                self._epmd = None
            _unregister(self)
            self._release_lock()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _check_db_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise ValueError(f"database name {name!r}: use letters, digits and _ (max 63)")
    return name


class PostgreSQL(_Service):
    """A private PostgreSQL server on 127.0.0.1 with its state under `<base_dir>/postgres/`.

    :param base_dir: directory for this instance's state (created if missing).  An existing,
        initialised data directory there is reused.  One running instance per directory.
    :param port: TCP port; default: the port used last time here if free, else a free port.
    :param durable: False trades crash safety for speed (fsync, synchronous_commit and
        full_page_writes off) - for tests.  Benchmarks should keep the default True.
    :param database: database created (if missing) at start; `url` points at it.
    :param settings: extra server settings, passed as ``-c name=value``.
    :param startup_timeout: seconds to wait for the server to accept connections.
    """

    kind = "postgres"
    system_user = "postgres"
    superuser = "postgres"

    def __init__(self, base_dir: str | os.PathLike, port: int | None = None, *,
                 durable: bool = True, database: str = "minqing",
                 settings: dict[str, str | int | float | bool] | None = None,
                 startup_timeout: float = 60.0):
        super().__init__(base_dir, port, startup_timeout)
        self.durable = durable
        self.database = _check_db_name(database)
        self.settings = dict(settings or {})
        self.data_dir = self.dir / "data"
        self.log_dir = self.dir / "log"
        self._socket_dir: Path | None = None
        self._bin: Path | None = None
        self.startup_seconds: float | None = None

    # -- public ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """SQLAlchemy URL of `database`: ``postgresql+psycopg://postgres@127.0.0.1:<port>/minqing``."""
        return self.admin_url(self.database)

    def admin_url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL for database `dbname`, as the superuser."""
        return f"postgresql+psycopg://{self.superuser}@{LOOPBACK}:{self.port}/{dbname}"

    def dsn(self, dbname: str | None = None) -> str:
        """libpq connection string (for ``psycopg.connect``)."""
        return (f"host={LOOPBACK} port={self.port} user={self.superuser} "
                f"dbname={dbname or self.database}")

    @property
    def log_file(self) -> Path:
        return self.log_dir / "postgres.log"

    def start(self) -> "PostgreSQL":
        """initdb if needed, start the server, create `database` if missing."""
        if self.is_running():
            return self
        t0 = time.monotonic()
        self._bin = _pg_bin_dir()
        if self._bin is None:
            raise DevStackError("PostgreSQL server binaries not found (/usr/lib/postgresql/15/"
                                f"bin); run: {install_command()}")
        run_as = self._prepare()
        try:
            self.log_dir.mkdir(exist_ok=True)
            self._socket_dir = self._choose_socket_dir()
            run_as.make_reachable(self.dir)
            run_as.own(self.dir)
            if not (self.data_dir / "PG_VERSION").is_file():
                self._initdb()
            self._proc = self._spawn(self._server_argv(), self._env(), self.log_file,
                                     cwd=self.dir)
            _register(self)
            self._wait_until_ready()
            self._ensure_database(self.database)
        except BaseException:
            self._teardown(graceful=False)
            raise
        self.startup_seconds = time.monotonic() - t0
        log.info("PostgreSQL ready on %s in %.1fs", self.url, self.startup_seconds)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL.  Idempotent."""
        self._teardown(graceful=True, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the server and its backends, like a crash (next start runs recovery)."""
        self._teardown(graceful=False)

    def restart(self, abrupt: bool = False, timeout: float = 30.0) -> "PostgreSQL":
        """Stop (fast shutdown, or SIGKILL if `abrupt`) and start again on the same port."""
        if abrupt:
            self._kill_tree(self._proc)
            self._proc = None
        else:
            self._stop_server(timeout)
        return self.start()

    def psql(self, sql: str, dbname: str = "postgres", timeout: float = 60.0) -> str:
        """Run SQL with psql as the superuser; return its unaligned, tuples-only output."""
        if self._bin is None:
            raise DevStackError(f"{self} has not been started")
        result = subprocess.run(
            [str(self._bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", LOOPBACK, "-p", str(self.port), "-U", self.superuser, "-d", dbname,
             "-c", sql],
            env=_clean_env(("PG",), PGCONNECT_TIMEOUT="10", PGAPPNAME="minqing-devstack"),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            raise DevStackError(f"psql failed ({result.returncode}) running {sql!r}:\n"
                                f"{result.stderr.strip()}")
        return result.stdout

    def database_exists(self, name: str) -> bool:
        _check_db_name(name)
        return self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1"

    def create_database(self, name: str, *, template: str | None = None,
                        drop_existing: bool = False) -> str:
        """Create database `name` (optionally as a copy of `template`, which must have no
        open connections) and return its SQLAlchemy URL.  With `drop_existing`, an existing
        database of that name is dropped first (disconnecting its clients)."""
        _check_db_name(name)
        if drop_existing:
            self.drop_database(name)
        sql = f'CREATE DATABASE "{name}"'
        if template:
            sql += f' TEMPLATE "{_check_db_name(template)}"'
        self.psql(sql)
        return self.admin_url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, disconnecting its clients."""
        _check_db_name(name)
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, lines: int = 40) -> str:
        return _tail([self.log_file], lines)

    # -- internals ---------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        assert self._run_as is not None
        return _clean_env(("PG",), HOME=str(self.dir), USER=self._run_as.name,
                          LOGNAME=self._run_as.name)

    def _choose_socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; fall back to a short private dir.
        preferred = self.dir / "run"
        if len(str(preferred / ".s.PGSQL.65535.lock")) < 100:
            preferred.mkdir(exist_ok=True)
            os.chmod(preferred, 0o700)
            return preferred
        import tempfile  # stdlib; only needed for very long paths
        short = Path(tempfile.mkdtemp(prefix="minqing-pg-"))
        if self._run_as is not None and self._run_as.switch:
            os.chown(short, self._run_as.uid, self._run_as.gid)
        return short

    def _initdb(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise DevStackError(f"{self.data_dir} exists, is not empty and has no PG_VERSION; "
                                "remove it or choose another directory")
        locale = (["--locale=C.UTF-8"] if Path("/usr/lib/locale/C.utf8").exists()
                  else ["--no-locale"])
        argv = [str(self._bin / "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
                "-E", "UTF8", *locale, "--auth=trust", "--no-instructions"]
        if not self.durable:
            argv.append("--no-sync")
        logfile = self.log_dir / "initdb.log"
        with self._open_log(logfile) as out:
            code = subprocess.run(argv, env=self._env(), cwd=self.dir, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=300,
                                  **self._run_as.popen_kwargs()).returncode
        if code != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)  # let the next try start afresh
            raise DevStackError(f"initdb failed ({code})\n{_tail([logfile])}")

    def _server_argv(self) -> list[str]:
        settings: dict[str, object] = {
            "listen_addresses": LOOPBACK,
            "logging_collector": "off",
            "log_destination": "stderr",
        }
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        settings.update(self.settings)
        argv = [str(self._bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(self._socket_dir)]
        for key, value in settings.items():
            if isinstance(value, bool):
                value = "on" if value else "off"
            argv += ["-c", f"{key}={value}"]
        return argv

    def _postmaster_status(self) -> str | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) >= 8 and lines[0].strip() == str(self._proc.pid):
            return lines[7].strip()
        return None

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise DevStackError(f"PostgreSQL exited with status {code} while starting\n"
                                    f"{self.log_tail()}")
            if self._postmaster_status() == "ready" and _can_connect(self.port):
                return
            if time.monotonic() > deadline:
                raise DevStackError(f"PostgreSQL did not accept connections on 127.0.0.1:"
                                    f"{self.port} within {self.startup_timeout:.0f}s\n"
                                    f"{self.log_tail()}")
            time.sleep(0.05)

    def _ensure_database(self, name: str) -> None:
        if not self.database_exists(name):
            self.create_database(name)

    def _stop_server(self, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        deadline = time.monotonic() + timeout
        descendants = self._descendants(proc.pid)
        for sig in (signal.SIGINT, signal.SIGQUIT):  # fast, then immediate shutdown
            if proc.poll() is not None:
                break
            self._signal(proc, sig)
            if self._wait(proc, (deadline - time.monotonic()) if sig == signal.SIGINT else 5):
                break
        self._reap(proc, descendants)
        self._proc = None

    def _teardown(self, graceful: bool, timeout: float = 30.0) -> None:
        try:
            if graceful:
                self._stop_server(timeout)
            else:
                self._kill_tree(self._proc)
                self._proc = None
        finally:
            if self._socket_dir is not None and self._socket_dir.parent != self.dir:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
            _unregister(self)
            self._release_lock()


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

class _Stop(Exception):
    pass


def _serve(service: _Service, announce: str) -> int:
    def on_signal(signum, frame):
        raise _Stop(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        service.start()
        print(announce.format(s=service), flush=True)
        print(f"{type(service).__name__} running (pid {service.pid}, state in {service.dir}, "
              f"started in {service.startup_seconds:.1f}s); Ctrl-C to stop", file=sys.stderr,
              flush=True)
        while service.is_running():
            time.sleep(0.5)
        print(f"{type(service).__name__} exited unexpectedly\n{service.log_tail()}",
              file=sys.stderr)
        return 1
    except _Stop as why:
        print(f"{why}: stopping {type(service).__name__} ...", file=sys.stderr, flush=True)
        return 0
    except DevStackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # do not get interrupted while stopping
        service.stop()
        print(f"{type(service).__name__} stopped", file=sys.stderr, flush=True)


def _check() -> int:
    missing = missing_binaries()
    if not missing:
        print(f"ok: RabbitMQ in {_rabbitmq_bin_dir()}, PostgreSQL in {_pg_bin_dir()}")
        return 0
    print("missing:")
    for what, package in missing:
        print(f"  {what}  (Debian package {package})")
    packages = [package for _, package in missing]
    print(f"install with:\n  {install_command(packages)}")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minqing.shell.devstack",
        description="Run a private RabbitMQ or PostgreSQL on 127.0.0.1 in the foreground.")
    sub = parser.add_subparsers(dest="command", required=True)
    rabbit = sub.add_parser("rabbitmq", help="start a private RabbitMQ node; prints its URI")
    rabbit.add_argument("--dir", required=True, type=Path, help="state directory")
    rabbit.add_argument("--port", type=int, help="AMQP port (default: last used, or free)")
    pg = sub.add_parser("postgres", help="start a private PostgreSQL; prints its URL")
    pg.add_argument("--dir", required=True, type=Path, help="state directory")
    pg.add_argument("--port", type=int, help="TCP port (default: last used, or free)")
    pg.add_argument("--no-durable", action="store_true",
                    help="fsync/synchronous_commit/full_page_writes off (faster, unsafe)")
    pg.add_argument("--database", default="minqing", help="database to create (default minqing)")
    sub.add_parser("check", help="report missing binaries and how to install them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="devstack: %(message)s")
    if args.command == "check":
        return _check()
    if args.command == "rabbitmq":
        return _serve(RabbitMQ(args.dir, args.port), "{s.uri}")
    return _serve(PostgreSQL(args.dir, args.port, durable=not args.no_durable,
                             database=args.database), "{s.url}")


if __name__ == "__main__":
    sys.exit(main())
