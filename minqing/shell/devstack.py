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
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

from minqing.shell.devstack_proc import APT_PACKAGES, DevStackError, LOOPBACK, _pg_bin_dir, _port_is_free, _rabbitmq_bin_dir, free_port, free_port_block, install_command, missing_binaries  # noqa: F401
from minqing.shell.devstack_service import _Service  # noqa: F401
from minqing.shell.devstack_rabbitmq import RabbitMQ  # noqa: F401
from minqing.shell.devstack_postgres import PostgreSQL  # noqa: F401



__all__ = [
    "DevStackError",
    "PostgreSQL",
    "RabbitMQ",
    "free_port",
    "free_port_block",
    "missing_binaries",
    "install_command",
]

log = logging.getLogger("minqing.devstack")

# ---- command line ------------------------------------------------------------

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
