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


# IPv6 forms that carry an IPv4 address inside them (the network delivers them to that IPv4 host, or a
# translator does): judged by the IPv4 address they carry, so `[::7f00:1]` is loopback like 127.0.0.1.
_V4_IN_LAST_32 = [ipaddress.ip_network(n) for n in (
    "::/96",               # IPv4-compatible (deprecated, RFC 4291 §2.5.5.1)
    "::ffff:0:0:0/96",     # IPv4-translated (RFC 2765)
    "64:ff9b::/96",        # NAT64 well-known prefix (RFC 6052)
    "64:ff9b:1::/48",      # NAT64 local-use prefix (RFC 8215)
)]


def _as_judged(address: ipaddress.IPv4Address | ipaddress.IPv6Address):
    """The address whose kind decides: the IPv4 address an IPv6 form carries, else the address."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:                          # 2002::/16 (6to4, RFC 3056)
        return address.sixtofour
    if address.teredo:                             # 2001::/32: the client's address, as Teredo writes it
        return address.teredo[1]
    if int(address) > 1 and any(address in net for net in _V4_IN_LAST_32):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


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
        address = _as_judged(ipaddress.ip_address(text.split("%")[0]))
        if address.is_global and not address.is_multicast:
            continue
        if allow_private and (address.is_private or address.is_loopback) and not (
                address.is_multicast or address.is_unspecified or address.is_link_local):
            continue
        raise TargetRefused(f"{parts.hostname} resolves to {address}, which is not a public address"
                            + ("" if allow_private else " (the county's configuration does not allow private targets)"))
    return addresses
