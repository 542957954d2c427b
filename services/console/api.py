"""The console's client of Minqing's own HTTP API: each call goes straight to the service that owns
the path (found with the gateway's route table, so there is one source of truth), with the
session's token and the browser's address as X-Forwarded-For (so per-client limits, such as the
resident's PIN attempts, count the real client and not the console)."""
from __future__ import annotations

import http.client
import json
import logging
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from minqing.config import Settings

log = logging.getLogger("minqing.console")


@dataclass
class Answer:
    status: int
    body: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> dict:
        return (self.body or {}).get("error") or {}


class Api:
    def __init__(self, settings: Settings):
        from minqing.shell.gateway import _build_routes
        self.settings = settings
        self.routes = _build_routes()

    def call(self, method: str, path: str, *, token: str | None = None, body: dict | None = None,
             query: dict | None = None, client: str = "unknown", headers: dict | None = None) -> Answer:
        from minqing.shell.gateway import route
        service = route(method, path, self.routes)
        if service is None:
            raise LookupError(f"no service answers {method} {path}")
        target = quote(path) + ("?" + urlencode(query) if query else "")
        sent = {"Content-Type": "application/json", "X-Forwarded-For": client, **(headers or {})}
        if self.settings.gateway_secret:     # the console stands where the gateway does: vouch for the address
            from minqing.access import GATEWAY_HEADER
            sent[GATEWAY_HEADER] = self.settings.gateway_secret
        if token:
            sent["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection(*self.settings.service_address(service), timeout=30)
        try:
            conn.request(method, target, body=json.dumps(body, ensure_ascii=False).encode() if body is not None else None,
                         headers=sent)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                payload = {}
            return Answer(resp.status, payload if isinstance(payload, dict) else {"items": payload})
        except OSError as exc:
            log.warning("%s is unreachable: %s", service, type(exc).__name__)
            return Answer(503, {"error": {"code": "service_unavailable", "message": service}})
        finally:
            conn.close()
