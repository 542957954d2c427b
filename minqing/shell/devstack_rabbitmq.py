"""A private RabbitMQ node (part of minqing.shell.devstack, which documents the whole)."""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from minqing.shell.devstack_proc import DevStackError, LOOPBACK, _clean_env, _rabbitmq_bin_dir, _tail, _write_if_changed, free_port, install_command  # noqa: F401
from minqing.shell.devstack_service import _Service, _register, _unregister  # noqa: F401

log = logging.getLogger("minqing.devstack")

# ---- RabbitMQ ------------------------------------------------------------

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


