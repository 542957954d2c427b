"""Keeping the stack's own ports for the stack.

The gateway and service ports (MINQING_HTTP_PORT and the next four) may fall inside the kernel's
ephemeral range (32768–60999 on Linux). Then any outgoing connection — the services' own AMQP and
database connections included — can be given one of them as its local port, and the service that
should listen there fails to bind until that connection closes, which for a long-lived AMQP connection
is never. `minqing run` therefore reserves the ports before it starts anything: it binds a socket to
each (SO_REUSEADDR, never listening) and holds it for the whole run. A bound port is never handed out
for an outgoing connection, and a server that also sets SO_REUSEADDR (werkzeug's and eventlet's do) may
still bind and listen on it, because the placeholder does not listen.
"""
from __future__ import annotations

import socket
import time

LOOPBACK = "127.0.0.1"


def _placeholder(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
        return sock
    except OSError:
        sock.close()
        return None


def reserve(ports: list[int], timeout: float = 15.0) -> tuple[list[socket.socket], list[int]]:
    """(placeholder sockets, ports still busy after `timeout` seconds). A port held by a listening
    server or an open connection cannot be reserved; one briefly taken (a connection about to close)
    is retried until `timeout`."""
    held: dict[int, socket.socket] = {}
    deadline = time.monotonic() + timeout
    while True:
        for port in ports:
            if port not in held:
                sock = _placeholder(port)
                if sock is not None:
                    held[port] = sock
        busy = [p for p in ports if p not in held]
        if not busy or time.monotonic() >= deadline:
            return list(held.values()), busy
        time.sleep(0.25)


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0
