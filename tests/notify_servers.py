"""Real local servers for notify's tests: an HTTP server that records what it is sent (an SMS gateway,
a webhook subscriber) and an SMTP server (aiosmtpd). Never mocks of the channel."""
from __future__ import annotations

import json
import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from minqing.shell.devstack import free_port


class HttpRecorder:
    """Answers `status` (200 by default; set `failing` to answer 500) and keeps every request."""

    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.failing = False
        self.delay = 0.0            # seconds to wait before answering (a slow gateway)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if recorder.delay:
                    time.sleep(recorder.delay)
                with recorder.lock:
                    failing = recorder.failing
                    recorder.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                              "answered": 500 if failing else 200})
                self.send_response(500 if failing else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": false}' if failing else b'{"ok": true}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted(self, path: str | None = None) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["answered"] == 200 and (path is None or r["path"] == path)]

    def json_bodies(self, path: str | None = None) -> list[dict]:
        return [json.loads(r["body"]) for r in self.accepted(path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpRecorder:
    def __init__(self):
        self.messages: list = []
        recorder = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                recorder.messages.append(message_from_bytes(envelope.content, policy=default_policy))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
