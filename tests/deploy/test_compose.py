"""deploy/compose: the Compose file and its Dockerfile. `docker compose config` is not available
here (no compose plugin), so the test checks what the stack relies on: every Minqing process and
its command, the shared network namespace (the processes talk on loopback), secrets by file, the
image built from this repository with requirements.lock's exact pins."""
from __future__ import annotations

import re

import yaml

from minqing.shell.runner import CHILDREN
from tests.deploy.metrics import ROOT

COMPOSE = ROOT / "deploy" / "compose"


def test_compose_stack():
    stack = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    services = stack["services"]
    assert {"postgres", "rabbitmq", "init", "gateway", "nginx", "exporter", *CHILDREN} <= set(services)
    for name in ("relay", "intake", "routing", "notify", "assessment", "console", "exporter", "nginx"):
        assert services[name]["network_mode"] == "service:gateway", name
    for name in [n for n in CHILDREN if n not in ("relay", "gateway")]:
        assert "entrypoint" not in services[name] and services[name]["command"] == ["service", name]   # `minqing service NAME`
    assert services["relay"]["command"] == ["relay"] and services["gateway"]["command"] == ["gateway"]
    assert services["exporter"]["entrypoint"] == ["python", "-m", "minqing.shell.exporter"]
    for name in (*CHILDREN, "init"):
        svc = services[name]
        assert set(svc["secrets"]) == {"database-url", "amqp-uri", "vault-key", "gateway-secret"}, name
        assert svc["env_file"] == ["minqing.env"]
        assert name == "init" or svc["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert set(stack["secrets"]) >= {"database-url", "amqp-uri", "vault-key", "gateway-secret", "postgres-password"}
    assert "../nginx/minqing.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    env = (COMPOSE / "minqing.env").read_text()
    assert "MINQING_DATABASE_URL_FILE=/run/secrets/database-url" in env and "PASSWORD" not in env
    build = services["init"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).resolve() == (COMPOSE / "Dockerfile").resolve()


def test_dockerfile_installs_the_pinned_requirements():
    text = (COMPOSE / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm$", text, re.M)
    assert "pip install --no-cache-dir --disable-pip-version-check -r requirements.lock" in text
    assert "--no-deps -e ." in text and re.search(r"^USER minqing$", text, re.M)
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        for path in line.split()[:-1]:                 # every source; the last word is the destination
            assert (ROOT / path).exists(), path
    lock = (ROOT / "requirements.lock").read_text()
    pins = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
