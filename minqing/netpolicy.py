"""Where Minqing may send HTTP requests on a county's behalf (webhook subscriptions, SMS gateways).

A webhook URL must be http(s), carry no credentials, and resolve only to public addresses: loopback,
private, link-local, multicast, reserved and unspecified addresses are refused unless the county's
configuration allows private targets (a county running its own systems on its own network). The
check resolves the name, so a public-looking name that points inside is refused too; deliveries
must connect to the addresses checked here, not resolve again (DNS rebinding).
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class TargetRefused(ValueError):
    pass


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TargetRefused(f"the host {host!r} does not resolve ({exc.strerror})") from None
    except UnicodeError:
        raise TargetRefused(f"the host {host!r} is not a valid name") from None
    return sorted({info[4][0] for info in infos})


def check_target(url: str, *, allow_private: bool = False, resolve=_resolve) -> list[str]:
    """Return the addresses `url` may be delivered to, or raise TargetRefused saying why."""
    try:
        parts = urlsplit(url)
        parts.hostname     # noqa: B018  (parses lazily and may raise)
    except ValueError as exc:
        raise TargetRefused(f"the URL is not well-formed ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("the URL must start with http:// or https://")
    if parts.username or parts.password:
        raise TargetRefused("the URL must not carry a user name or password")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("the URL's port is not a number between 1 and 65535") from None
    addresses = resolve(parts.hostname, port)
    if not addresses:
        raise TargetRefused(f"the host {parts.hostname!r} does not resolve")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.is_global and not address.is_multicast:
            continue
        if allow_private and (address.is_private or address.is_loopback) and not (
                address.is_multicast or address.is_unspecified or address.is_link_local):
            continue
        raise TargetRefused(f"{parts.hostname} resolves to {address}, which is not a public address"
                            + ("" if allow_private else " (the county's configuration does not allow private targets)"))
    return addresses
