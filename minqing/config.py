"""Runtime configuration, read from environment variables in one place.

Every setting has a default that works for the embedded stack (`make run`): a SQLite ledger under
`.run/` and a private RabbitMQ node. Documented in the README's "Configuration" section.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"configuration error: {name} must be a whole number, got {raw!r}")


def env_number(name: str, default: float, low: float, high: float) -> float:
    """A number from the environment within [low, high], or a configuration error naming the variable."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise SystemExit(f"configuration error: {name} must be a number between {low:g} and {high:g}, got {raw!r}")
    return value


def _seconds(name: str, default: float) -> float:
    return env_number(name, default, 0.1, 3600)


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

    # Every port of one stack, as an offset from `http_port` (the gateway): the one place they are set.
    PORT_OFFSETS = {"intake": 1, "routing": 2, "notify": 3, "assessment": 4, "relay-metrics": 5,
                    "exporter": 6, "console": 7}
    SERVICES = ("intake", "routing", "notify", "assessment", "console")

    @property
    def service_ports(self) -> dict[str, int]:
        """Each HTTP service's own port, behind the gateway on `http_port`."""
        return {name: self.http_port + self.PORT_OFFSETS[name] for name in self.SERVICES}

    @property
    def relay_metrics_port(self) -> int:
        return self.http_port + self.PORT_OFFSETS["relay-metrics"]

    @property
    def exporter_port(self) -> int:
        return self.http_port + self.PORT_OFFSETS["exporter"]

    def effective_amqp_uri(self) -> str:
        return self.amqp_uri or f"pyamqp://guest:guest@127.0.0.1:{self.amqp_port}//"


def load() -> Settings:
    run_dir = Path(os.environ.get("MINQING_RUN_DIR") or ROOT / ".run").resolve()
    database_url = os.environ.get("MINQING_DATABASE_URL") or f"sqlite:///{run_dir / 'minqing.db'}"
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
    return Settings(
        run_dir=run_dir,
        database_url=database_url,
        amqp_uri=os.environ.get("MINQING_AMQP_URI") or None,
        amqp_port=_int("MINQING_AMQP_PORT", 5672),
        http_port=_int("MINQING_HTTP_PORT", 8000),
        counties_dir=Path(os.environ.get("MINQING_COUNTIES_DIR") or ROOT / "deploy" / "counties"),
        assessment_dir=Path(os.environ.get("MINQING_ASSESSMENT_DIR") or ROOT / "deploy" / "assessment"),
        log_level=os.environ.get("MINQING_LOG_LEVEL", "INFO").upper(),
        sweep_seconds=_seconds("MINQING_SWEEP_SECONDS", 5.0),
        gateway_secret=gateway_secret(),
    )


def gateway_secret() -> str | None:
    """MINQING_GATEWAY_SECRET: the proof the gateway adds to each forwarded request; with it, and only
    with it, a service trusts the request's X-Forwarded-For (minqing.access.client_key)."""
    return os.environ.get("MINQING_GATEWAY_SECRET") or None
