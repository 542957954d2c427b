"""The development stack's process helpers: free ports, running as the database's own user, binaries
(part of minqing.shell.devstack, which documents the whole)."""
from __future__ import annotations

import logging
import os
import pwd
import random
import re
import shutil
import socket
import stat
import subprocess
import threading
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger("minqing.devstack")

LOOPBACK = "127.0.0.1"
APT_PACKAGES = ("rabbitmq-server", "postgresql-15")


class DevStackError(RuntimeError):
    """A private service could not be prepared, started or stopped."""


# ---- small helpers ------------------------------------------------------------

_handed_out_ports: set[int] = set()
_port_lock = threading.Lock()


# Where free_port looks first: from here up to the start of the kernel's ephemeral range.
PORT_FLOOR = 20000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out as the source ports of outgoing connections (Linux's
    net.ipv4.ip_local_port_range; its default where that cannot be read)."""
    try:
        low, high = map(int, _EPHEMERAL_RANGE.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on `host` (127.0.0.1) that nothing listens on right now.

    The port is taken from below the kernel's ephemeral range (PORT_FLOOR up to its start, less a
    margin of 16 so that a block of ports starting here stays below it too). Why: a port in the
    ephemeral range can be taken at any moment as the source port of any process's outgoing
    connection — a client of PostgreSQL or RabbitMQ, say — and held for as long as that connection
    lives. A server restarted on its old port (the private broker after a crash, `minqing run`
    started again on the same run directory) then found it taken and could not start. Outgoing
    connections never take a port below the range, so only another listener can. Where the range
    leaves too little room below it, the kernel picks (bind to port 0), as before.

    There is an unavoidable window between this call and the server binding the port; this
    function never returns the same port twice in one process, so instances started from one
    process (even concurrently) cannot collide.
    """
    low = PORT_FLOOR
    high = ephemeral_range()[0] - 16
    with _port_lock:
        for _ in range(200):
            if high - low >= 1000:
                port = random.randrange(low, high)
                if port in _handed_out_ports or not _port_is_free(port, host, reuse_address=False):
                    continue
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((host, 0))
                    port = s.getsockname()[1]
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise DevStackError("could not find a free TCP port on 127.0.0.1")


def free_port_block(size: int, host: str = LOOPBACK) -> int:
    """The first of `size` consecutive ports on `host` that are all free right now (a stack's
    gateway and the ports Settings.PORT_OFFSETS names after it). Like free_port, never hands out a
    port of the block twice in one process."""
    for _ in range(100):
        base = free_port(host)
        rest = range(base + 1, base + size)
        with _port_lock:
            if base + size < 65000 and not _handed_out_ports.intersection(rest) \
                    and all(_port_is_free(port, host, reuse_address=False) for port in rest):
                _handed_out_ports.update(rest)
                return base
    raise DevStackError(f"could not find {size} consecutive free TCP ports on {host}")


def _port_is_free(port: int, host: str = LOOPBACK, reuse_address: bool = True) -> bool:
    """Whether `port` can be bound on `host`. With `reuse_address` (as the servers bind), a port
    some closed connection left in TIME_WAIT counts as free; without it, only a port nothing holds
    at all does (free_port's stricter choice for ports it hands out)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if reuse_address:
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


