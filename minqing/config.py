"""Runtime configuration: every kernel-level MINQING_* variable is read here, and nowhere else.

`load()` reads them all, checks each one, and raises ConfigError naming *every* bad variable in one
message (a SystemExit, so a process stops with that message and no traceback). `minqing config check`
prints the effective configuration, secrets masked, or the same list of problems.

Secrets (MINQING_DATABASE_URL, MINQING_AMQP_URI, MINQING_VAULT_KEY, MINQING_GATEWAY_SECRET) may
instead name a file with the `_FILE` suffix (systemd credentials, Docker/Kubernetes secrets): the
file's content, trailing newline removed, is the value. Setting both spellings is an error.

Every setting has a default that works for the embedded stack (`make run`): a SQLite ledger under
`.run/` and a private RabbitMQ node, every process on 127.0.0.1. The one table of variables is in
docs/operations.md, "Configuration".
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("MINQING_DATABASE_URL", "MINQING_AMQP_URI", "MINQING_VAULT_KEY", "MINQING_GATEWAY_SECRET")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(SystemExit):
    """Bad configuration: every problem, each naming its variable, in one message."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("configuration error:\n" + "\n".join(f"  - {p}" for p in problems))


class Reader:
    """Reads variables from `environ`, collecting problems instead of stopping at the first."""

    def __init__(self, environ=None):
        self.environ = os.environ if environ is None else environ
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str | None:
        raw = self.environ.get(name)
        return default if raw in (None, "") else raw

    def secret(self, name: str) -> str | None:
        """NAME from the environment, or the content of the file NAME_FILE names."""
        direct, path = self.environ.get(name) or None, self.environ.get(name + "_FILE") or None
        if direct and path:
            self.problems.append(f"{name} and {name}_FILE are both set; keep one")
            return None
        if path:
            try:
                value = Path(path).read_text().rstrip("\r\n")
            except OSError as exc:
                self.problems.append(f"{name}_FILE: cannot read {path} ({exc.strerror or type(exc).__name__})")
                return None
            if not value.strip():
                self.problems.append(f"{name}_FILE: {path} is empty")
                return None
            return value
        return direct

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.environ.get(name)
        if raw in (None, ""):
            return default
        try:
            value = float(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            self.problems.append(f"{name} must be a number between {low:g} and {high:g}, got {raw!r}")
            return default
        return value

    def port(self, name: str, default: int) -> int:
        raw = self.environ.get(name)
        if raw in (None, ""):
            return default
        if not raw.isdigit() or not 0 <= int(raw) <= 65535:
            self.problems.append(f"{name} must be a port number (0-65535), got {raw!r}")
            return default
        return int(raw)

    def host(self, name: str, default: str) -> str:
        raw = self.text(name, default)
        if not re.fullmatch(r"[A-Za-z0-9.:_-]+|\[[0-9A-Fa-f:]+\]", raw):
            self.problems.append(f"{name} must be a host name or an IP address, got {raw!r}")
            return default
        return raw.strip("[]")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.text(name, default).upper()
        if raw not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
            return default
        return raw

    def directory(self, name: str, default: Path) -> Path:
        return Path(self.text(name) or default)


def env_number(name: str, default: float, low: float, high: float) -> float:
    """A number from the environment within [low, high], or a configuration error naming the variable
    (for settings a service reads in its own module, e.g. services/notify/settings.py)."""
    reader = Reader()
    value = reader.number(name, default, low, high)
    if reader.problems:
        raise ConfigError(reader.problems)
    return value


@dataclass(frozen=True)
class Settings:
    run_dir: Path
    database_url: str
    amqp_uri: str | None          # None: `minqing run` starts a private node
    amqp_port: int
    http_port: int
    counties_dir: Path
    assessment_dir: Path
    log_level: str
    sweep_seconds: float = 5.0    # how often routing's timer sweep looks for due deadlines
    gateway_secret: str | None = None   # the gateway's proof to the services (`minqing run` makes one per run)
    listen_address: str = "127.0.0.1"   # where this process binds its port(s)
    ports: dict = field(default_factory=dict)   # explicit per-process ports (MINQING_<NAME>_PORT)
    hosts: dict = field(default_factory=dict)   # where the gateway reaches each service (MINQING_<NAME>_HOST)
    vault_key: str | None = None        # MINQING_VAULT_KEY(_FILE) content: one key, or several (newest first)
    vault_key_file: Path | None = None  # where the keys live; None when in the environment, or not given

    # Every port of one stack, as an offset from `http_port` (the gateway): the defaults of
    # MINQING_<NAME>_PORT.
    PORT_OFFSETS = {"intake": 1, "routing": 2, "notify": 3, "assessment": 4, "relay-metrics": 5,
                    "exporter": 6, "console": 7}
    SERVICES = ("intake", "routing", "notify", "assessment", "console")

    def port_of(self, name: str) -> int:
        return self.ports.get(name) or self.http_port + self.PORT_OFFSETS[name]

    @property
    def service_ports(self) -> dict[str, int]:
        """Each HTTP service's own port, behind the gateway on `http_port`."""
        return {name: self.port_of(name) for name in self.SERVICES}

    def service_address(self, name: str) -> tuple[str, int]:
        """Where the gateway (and the console) reach service `name`."""
        return self.hosts.get(name, "127.0.0.1"), self.port_of(name)

    @property
    def relay_metrics_port(self) -> int:
        return self.port_of("relay-metrics")

    @property
    def exporter_port(self) -> int:
        return self.port_of("exporter")

    def effective_amqp_uri(self) -> str:
        return self.amqp_uri or f"pyamqp://guest:guest@127.0.0.1:{self.amqp_port}//"

    @property
    def embedded(self) -> bool:
        """The embedded default: a SQLite ledger (the vault key may then live beside the data)."""
        return self.database_url.startswith("sqlite")


def _env_name(process: str) -> str:
    return "MINQING_" + process.upper().replace("-", "_")


def load(environ=None) -> Settings:
    r = Reader(environ)
    run_dir = Path(r.text("MINQING_RUN_DIR") or ROOT / ".run").resolve()
    database_url = r.secret("MINQING_DATABASE_URL") or f"sqlite:///{run_dir / 'minqing.db'}"
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
    if not database_url.startswith(("sqlite", "postgresql")):
        r.problems.append("MINQING_DATABASE_URL must be a sqlite:/// or postgresql:// URL")
    amqp_uri = r.secret("MINQING_AMQP_URI")
    if amqp_uri and urlsplit(amqp_uri).scheme not in ("amqp", "amqps", "pyamqp"):
        r.problems.append("MINQING_AMQP_URI must be an amqp://, amqps:// or pyamqp:// URI")
    http_port = r.port("MINQING_HTTP_PORT", 8000)
    ports = {name: r.port(_env_name(name) + "_PORT", 0) for name in Settings.PORT_OFFSETS}
    if any(http_port + offset > 65535 for offset in Settings.PORT_OFFSETS.values()) and not all(ports.values()):
        r.problems.append(f"MINQING_HTTP_PORT {http_port} leaves no room for the ports after it "
                          f"(+1 … +{max(Settings.PORT_OFFSETS.values())}); choose a lower base port")
    hosts = {name: r.host(_env_name(name) + "_HOST", "127.0.0.1") for name in Settings.SERVICES}
    # The vault's keys are a list (rotation), so MINQING_VAULT_KEY_FILE is kept as a path, not read here.
    vault_key, key_file_var = r.text("MINQING_VAULT_KEY"), r.text("MINQING_VAULT_KEY_FILE")
    if vault_key and key_file_var:
        r.problems.append("MINQING_VAULT_KEY and MINQING_VAULT_KEY_FILE are both set; keep one")
    settings = Settings(
        run_dir=run_dir,
        database_url=database_url,
        amqp_uri=amqp_uri,
        amqp_port=r.port("MINQING_AMQP_PORT", 5672),
        http_port=http_port,
        counties_dir=r.directory("MINQING_COUNTIES_DIR", ROOT / "deploy" / "counties"),
        assessment_dir=r.directory("MINQING_ASSESSMENT_DIR", ROOT / "deploy" / "assessment"),
        log_level=r.choice("MINQING_LOG_LEVEL", "INFO", LOG_LEVELS),
        sweep_seconds=r.number("MINQING_SWEEP_SECONDS", 5.0, 0.1, 3600),
        gateway_secret=r.secret("MINQING_GATEWAY_SECRET"),
        listen_address=r.host("MINQING_LISTEN_ADDRESS", "127.0.0.1"),
        ports={k: v for k, v in ports.items() if v},
        hosts=hosts,
        vault_key=vault_key,
        # beside the data only in the embedded default (SQLite); otherwise it must be given
        vault_key_file=Path(key_file_var) if key_file_var else (
            run_dir / "vault.key" if database_url.startswith("sqlite") and not vault_key else None),
    )
    # read where it is used (minqing.clock, before any settings exist), checked here with the rest
    if (r.text("MINQING_CLOCK") or "system").strip().lower() not in ("system", "demo"):
        r.problems.append(f"MINQING_CLOCK must be demo or system (or unset), got {r.text('MINQING_CLOCK')!r}")
    r.number("MINQING_FOLLOW_SECONDS", 2.0, 0.05, 60)      # read where it is used (follow_seconds), checked here
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def follow_seconds() -> float | None:
    """MINQING_FOLLOW_SECONDS, or None when unset: how often a follower reads the ledger when nothing
    woke it. Unset, a follower looks every 2 s, and on PostgreSQL — where the append's NOTIFY wakes
    it — every 10 s (minqing.ledger_listen.FALLBACK_POLL_SECONDS). A follower is woken only by events
    of the types it follows, so this bounds how long its checkpoint stays behind events of other
    types, and how late a lost wake-up is made good. Set, it is the poll on every backend: a
    demo-clock stack (`make demo`, bench.simulate_month, the demo-clock tests) sets 0.25, because
    the simulator waits for every reader to reach the ledger's head after each move of the clock."""
    r = Reader()
    if r.text("MINQING_FOLLOW_SECONDS") is None:
        return None
    value = r.number("MINQING_FOLLOW_SECONDS", 2.0, 0.05, 60)
    if r.problems:
        raise ConfigError(r.problems)
    return value


def gateway_secret() -> str | None:
    """MINQING_GATEWAY_SECRET(_FILE): the proof the gateway adds to each forwarded request; with it, and
    only with it, a service trusts the request's X-Forwarded-For (minqing.access.client_key)."""
    r = Reader()
    value = r.secret("MINQING_GATEWAY_SECRET")
    if r.problems:
        raise ConfigError(r.problems)
    return value


def describe(settings: Settings) -> list[tuple[str, str]]:
    """The effective configuration as (variable, value) rows, secrets masked: for `minqing config check`."""
    def mask_url(url: str | None) -> str:
        if not url:
            return "(unset)"
        parts = urlsplit(url)
        if parts.password:
            return url.replace(f":{parts.password}@", ":****@", 1)
        return url

    rows = [("MINQING_RUN_DIR", str(settings.run_dir)),
            ("MINQING_DATABASE_URL", mask_url(settings.database_url)),
            ("MINQING_AMQP_URI", mask_url(settings.amqp_uri) if settings.amqp_uri
             else f"(unset: `minqing run` starts a private node on port {settings.amqp_port})"),
            ("MINQING_LISTEN_ADDRESS", settings.listen_address),
            ("MINQING_HTTP_PORT", str(settings.http_port))]
    for name in Settings.PORT_OFFSETS:
        rows.append((_env_name(name) + "_PORT", str(settings.port_of(name))))
    for name in Settings.SERVICES:
        rows.append((_env_name(name) + "_HOST", settings.hosts.get(name, "127.0.0.1")))
    rows += [("MINQING_COUNTIES_DIR", str(settings.counties_dir)),
             ("MINQING_ASSESSMENT_DIR", str(settings.assessment_dir)),
             ("MINQING_LOG_LEVEL", settings.log_level),
             ("MINQING_SWEEP_SECONDS", f"{settings.sweep_seconds:g}"),
             ("MINQING_FOLLOW_SECONDS", os.environ.get("MINQING_FOLLOW_SECONDS") or "2"),
             ("MINQING_CLOCK", os.environ.get("MINQING_CLOCK") or "system"),
             ("MINQING_GATEWAY_SECRET", "****" if settings.gateway_secret else "(unset)"),
             ("MINQING_VAULT_KEY", "****" if settings.vault_key else "(unset)"),
             ("MINQING_VAULT_KEY_FILE", str(settings.vault_key_file) if settings.vault_key_file else "(unset)")]
    return rows
