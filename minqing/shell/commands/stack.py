"""`minqing run|relay|gateway|service|config|vault|clock|simulate`: the processes of a stack, its
configuration and keys, the demo clock and the simulator."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from minqing import config as config_mod
from minqing.commands import engine_and_ledger, fail, published_policy

log = logging.getLogger("minqing.cli")

def cmd_relay(args, settings) -> int:
    from minqing.logs import setup_logging
    from minqing.relay import Relay
    setup_logging(settings.log_level, "relay")
    _, ledger = engine_and_ledger(settings)
    try:
        from prometheus_client import start_http_server
        start_http_server(settings.relay_metrics_port, addr=settings.listen_address)
    except OSError as exc:
        log.warning("relay metrics not served on port %d: %s", settings.relay_metrics_port, exc)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Relay(ledger, settings.effective_amqp_uri()).run(stop)
    return 0


def cmd_service(args, settings) -> int:
    # a fresh interpreter: eventlet must patch the standard library before anything else is imported
    os.execv(sys.executable, [sys.executable, "-m", "minqing.shell.service_main", args.name])
    return 0


def cmd_gateway(args, settings) -> int:
    from minqing.shell.gateway import main as gateway_main
    return gateway_main()


def cmd_config(args, settings) -> int:
    """Configuration problems never reach here: main() prints them (exit 1). This also checks the
    vault keys and the notify service's own settings, which are read where they are used."""
    from minqing import vault as vault_mod
    problems = []
    try:
        keys = _peek_keys(settings, vault_mod)
    except vault_mod.VaultError as exc:
        problems.append(f"vault key: {exc}")
        keys = []
    from importlib.metadata import entry_points
    for check in sorted(entry_points(group="minqing.settings_checks"), key=lambda ep: ep.name):
        try:
            check.load()()          # a service's own settings (notify's), read where they are used
        except config_mod.ConfigError as exc:       # every bad variable, each on its line
            problems.extend(exc.problems)
        except SystemExit as exc:
            problems.append(str(exc.code).removeprefix("configuration error:").strip())
    if problems:
        print("configuration error:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        return 1
    width = max(len(name) for name, _ in config_mod.describe(settings))
    for name, value in config_mod.describe(settings):
        print(f"{name:<{width}}  {value}")
    print(f"{'vault keys':<{width}}  {len(keys)} (the first is the primary)" if keys
          else f"{'vault keys':<{width}}  none yet: the embedded default makes {settings.vault_key_file} on first use")
    return 0


def _peek_keys(settings, vault_mod) -> list:
    """The configured keys, without making the embedded default's key file."""
    if settings.vault_key or settings.vault_key_file is None or settings.vault_key_file.exists():
        return vault_mod.master_keys(settings)
    return []


def cmd_vault(args, settings) -> int:
    from minqing import vault as vault_mod
    if args.action == "keygen":
        out = Path(args.out)
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return fail(f"{out} exists; `minqing vault rotate` adds a key to an existing file")
        from cryptography.fernet import Fernet
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
        print(f"wrote a new vault key to {out} (mode 0600); point MINQING_VAULT_KEY_FILE at it")
        return 0
    if settings.vault_key or settings.vault_key_file is None:
        return fail("rotation rewrites the key file: set MINQING_VAULT_KEY_FILE (not MINQING_VAULT_KEY)")
    try:
        keys = vault_mod.rotate(settings.vault_key_file)
    except vault_mod.VaultError as exc:
        return fail(str(exc))
    print(f"{settings.vault_key_file}: a new primary key; {len(keys) - 1} older key(s) kept to decrypt")
    if args.reencrypt:
        from minqing.db import make_engine
        from minqing.schema import require_current
        engine = make_engine(settings.database_url)
        require_current(engine)
        with engine.begin() as conn:
            count = vault_mod.Vault(keys).reencrypt(conn)
        print(f"re-encrypted {count} resident key(s) under the new primary key")
    print("restart every Minqing process to use the new key (systemctl restart minqing.target)")
    return 0


def cmd_run(args, settings) -> int:
    from minqing.shell.runner import run_stack
    from minqing.schema_run import upgrade_own_database
    if not upgrade_own_database(settings):     # the embedded default upgrades its own database, and says so
        return 1
    if _start_demo_clock(settings):      # a demo deployment's clock is anchored before any process reads it
        return 1
    return run_stack(settings)


def _start_demo_clock(settings) -> int:
    from minqing import democlock
    try:
        _, ledger = engine_and_ledger(settings)
        line = democlock.start(ledger)
    except democlock.DemoClockError as exc:
        return fail(str(exc))
    if line:
        print(line, flush=True)
    return 0


def cmd_clock(args, settings) -> int:
    from zoneinfo import ZoneInfo
    from minqing import democlock
    from minqing.clock import demo_clock_configured, isoformat, parse_instant
    try:
        if args.action == "show":
            if not demo_clock_configured():
                print("system clock: this deployment runs on real time (MINQING_CLOCK=demo is not set)")
                return 0
            _, ledger = engine_and_ledger(settings)
            now, anchor = democlock.current(ledger)
            local = now.astimezone(ZoneInfo(args.zone)).strftime("%Y-%m-%d %H:%M:%S %Z")
            rate = f"running at {anchor.rate:g}×" if anchor else "not anchored yet (minqing run anchors it)"
            print(f"demo clock: {isoformat(now)} ({local} {args.zone}), {rate}")
            return 0
        democlock.require_demo()
        _, ledger = engine_and_ledger(settings)
        if args.action == "advance":
            event = democlock.advance(ledger, democlock.parse_duration(args.by))
        else:
            try:
                moment = parse_instant(args.to)
            except ValueError:
                return fail(f"not an instant with a zone: {args.to!r} (e.g. 2026-11-02T08:00+08:00)")
            rate = democlock.parse_rate(args.rate, "--rate") if args.rate is not None else None
            event = democlock.set_clock(ledger, moment, rate=rate)
    except democlock.DemoClockError as exc:
        return fail(str(exc), 2)
    moved_to = parse_instant(event.data["demo_at"])
    print(f"demo clock {event.type.split('.')[1]} to {democlock.shown(moved_to, getattr(args, 'zone', None))} ({event.data['demo_at']}, "
          f"ledger position {event.position}); "
          f"every process follows within about {democlock.REFRESH_SECONDS:g} s")
    return 0


def cmd_simulate(args, settings) -> int:
    from minqing.shell.simulate.cli import run
    return run(args, settings)


def add_processes(sub) -> None:
    """run, relay, gateway, service, config, vault."""
    sub.add_parser("run", help="run the whole stack").set_defaults(func=cmd_run)
    sub.add_parser("relay", help="run the ledger → broker relay").set_defaults(func=cmd_relay)
    sub.add_parser("gateway", help="run the public HTTP entry (behind nginx)").set_defaults(func=cmd_gateway)
    p = sub.add_parser("service", help="run one service")
    p.add_argument("name", choices=["intake", "routing", "notify", "assessment", "console"])
    p.set_defaults(func=cmd_service)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="action", required=True)
    p = cfg.add_parser("check", help="print the effective configuration (secrets masked) or every problem")
    p.set_defaults(func=cmd_config)

    vault = sub.add_parser("vault", help="the vault's master keys").add_subparsers(dest="action", required=True)
    p = vault.add_parser("keygen", help="write a new key file (mode 0600)")
    p.add_argument("--out", required=True, help="the file to write (never overwritten)")
    p.set_defaults(func=cmd_vault)
    p = vault.add_parser("rotate", help="put a new primary key first in MINQING_VAULT_KEY_FILE (old keys still decrypt)")
    p.add_argument("--reencrypt", action="store_true", help="also re-wrap every resident's key under the new key")
    p.set_defaults(func=cmd_vault)


def add_demo(sub) -> None:
    """clock, simulate."""
    clock = sub.add_parser("clock", help="the demo clock (demo/training deployments only)").add_subparsers(
        dest="action", required=True)
    p = clock.add_parser("show", help="the time every process of the stack follows")
    p.add_argument("--zone", default="Asia/Shanghai", help="also show it in this zone (default Asia/Shanghai)")
    p.set_defaults(func=cmd_clock)
    p = clock.add_parser("advance", help="move the demo clock forward (recorded as clock.advanced)")
    p.add_argument("by", help="a duration: 3d, 12h, 1d12h, 90m, 30s")
    p.set_defaults(func=cmd_clock)
    p = clock.add_parser("set", help="set the demo clock to a later instant (recorded as clock.set)")
    p.add_argument("to", help="an instant with its zone, e.g. 2026-11-02T08:00+08:00")
    p.add_argument("--rate", help="demo seconds per real second from then on (0 stops it between moves)")
    p.set_defaults(func=cmd_clock)

    from minqing.shell.simulate.cli import add_arguments
    p = sub.add_parser("simulate", help="drive a running stack with a county's traffic through its API")
    add_arguments(p)
    p.set_defaults(func=cmd_simulate)
