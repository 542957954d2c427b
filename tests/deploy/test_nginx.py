"""The nginx site (deploy/nginx/minqing.conf) under a real nginx (Debian's package): `nginx -t`,
then served on loopback in front of a stand-in upstream, to check what the config promises:
bodies over the API's 64 KiB refused at nginx, /metrics never public, proxy headers set (the
client's own X-Forwarded-For replaced), HTTP redirected to HTTPS."""
from __future__ import annotations

import http.client
import json
import re
import shutil
import ssl
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minqing.shell.devstack import free_port
from minqing.http import MAX_BODY_BYTES
from tests.deploy.metrics import ROOT

SITE = ROOT / "deploy" / "nginx" / "minqing.conf"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if shutil.os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx missing: run deploy/local/install-debian-deps.sh")


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minqing.test")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))


def _render(tmp_path, upstream: int, http_port: int, https_port: int) -> str:
    """The shipped site with only its placeholders and machine paths changed, inside a minimal nginx.conf."""
    site = SITE.read_text()
    site = site.replace("/etc/ssl/minqing/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/ssl/minqing/privkey.pem", str(tmp_path / "key.pem"))
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    site = re.sub(r"listen 80;", f"listen 127.0.0.1:{http_port};", site)
    site = re.sub(r"listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", site)
    site = re.sub(r"\s*listen \[::\]:\d+[^;]*;", "", site)
    assert f"{upstream}" in site and f"{https_port}" in site
    (tmp_path / "site.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
error_log {tmp_path}/error.log;
pid {tmp_path}/nginx.pid;
daemon off;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    return str(conf)


class _Echo(BaseHTTPRequestHandler):
    """Stands in for the gateway: answers with the path, the body's length and the proxy headers."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"path": self.path, "length": length,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


def test_nginx_accepts_the_site(tmp_path):
    _self_signed(tmp_path)
    conf = _render(tmp_path, free_port(), free_port(), free_port())
    result = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", conf], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "syntax is ok" in result.stderr, result.stderr


def test_nginx_in_front_of_the_gateway(tmp_path):
    _self_signed(tmp_path)
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    http_port, https_port = free_port(), free_port()
    conf = _render(tmp_path, upstream.server_address[1], http_port, https_port)
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", conf], stderr=subprocess.PIPE)
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        context.check_hostname = False

        def call(method, path, body=None, headers=None):
            for _ in range(100):
                try:
                    conn = http.client.HTTPSConnection("127.0.0.1", https_port, context=context, timeout=10)
                    conn.request(method, path, body=body, headers=headers or {})
                    resp = conn.getresponse()
                    return resp.status, resp.read()
                except (ConnectionRefusedError, ssl.SSLError):
                    time.sleep(0.1)
            raise AssertionError("nginx did not start: " + (tmp_path / "error.log").read_text())

        status, body = call("POST", "/api/v1/cases", b"x" * 1000, {"X-Forwarded-For": "6.6.6.6",
                                                                    "Content-Type": "application/json"})
        seen = json.loads(body)
        assert status == 200 and seen["length"] == 1000
        assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"          # the client's claim replaced
        assert seen["headers"]["x-forwarded-proto"] == "https" and seen["headers"]["x-real-ip"] == "127.0.0.1"

        assert call("POST", "/api/v1/cases", b"x" * MAX_BODY_BYTES)[0] == 200
        assert call("POST", "/api/v1/cases", b"x" * (MAX_BODY_BYTES + 1))[0] == 413
        assert call("GET", "/metrics")[0] == 404
        assert call("GET", "/health")[0] == 200                             # from the local network

        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        plain.request("GET", "/api/v1/cases?x=1")
        resp = plain.getresponse()
        assert resp.status == 301 and resp.getheader("Location").startswith("https://")
        assert call("GET", "/api/v1/cases/T-1?pin=4711")[0] == 200
        # nginx logs a request after answering it: wait for the line rather than race it
        deadline, log = time.monotonic() + 10, ""
        while "/api/v1/cases/T-1" not in log and time.monotonic() < deadline:
            time.sleep(0.05)
            log = (tmp_path / "minqing.access.log").read_text()
        assert "/api/v1/cases/T-1" in log and "4711" not in log            # no query strings in the log
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        upstream.shutdown()
