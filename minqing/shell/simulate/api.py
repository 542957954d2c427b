"""A small JSON client for the stack's public API, patient with rate limits (429) and brief 503s."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request


class ApiFailure(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body):
        self.status, self.body = status, body
        super().__init__(f"{method} {path} answered {status}: {str(body)[:300]}")


class Api:
    def __init__(self, base: str, *, timeout: float = 60.0, patience: float = 180.0):
        self.base, self.timeout, self.patience = base.rstrip("/"), timeout, patience
        self.requests = 0
        self._counting = threading.Lock()     # the simulator sends independent requests from several threads

    def call(self, method: str, path: str, body=None, *, token: str | None = None) -> tuple[int, object]:
        """(status, JSON body) of any answer below 500 except 429; waits and retries 429/502/503."""
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        deadline, wait = time.monotonic() + self.patience, 0.25
        while True:
            with self._counting:
                self.requests += 1
            request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    return resp.status, _json(resp.read())
            except urllib.error.HTTPError as err:
                status, payload = err.code, _json(err.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                status, payload = 503, str(err)
            if status not in (429, 502, 503) or time.monotonic() > deadline:
                if status >= 500 or status == 429:
                    raise ApiFailure(method, path, status, payload)
                return status, payload
            time.sleep(wait)
            wait = min(wait * 2, 2.0)

    def ok(self, method: str, path: str, body=None, *, token: str | None = None):
        status, payload = self.call(method, path, body, token=token)
        if status >= 400:
            raise ApiFailure(method, path, status, payload)
        return payload


def _json(raw: bytes):
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode(errors="replace")
