"""A private PostgreSQL 15 cluster (part of minqing.shell.devstack, which documents the whole)."""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from minqing.shell.devstack_proc import DevStackError, LOOPBACK, _can_connect, _clean_env, _pg_bin_dir, _tail, install_command  # noqa: F401
from minqing.shell.devstack_service import _Service, _register, _unregister  # noqa: F401

log = logging.getLogger("minqing.devstack")

# ---- PostgreSQL ------------------------------------------------------------

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
            # the tests run several whole stacks on one development server at once, and every process of
            # a stack keeps a pool and a LISTEN connection (minqing.ledger_listen): PostgreSQL's default
            # of 100 ran out ("too many clients already")
            "max_connections": 300,
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


