"""The client's address, as per-address limits count it.

Behind a reverse proxy every request comes from the proxy, so the proxy's
X-Forwarded-For names the client. Only a trusted peer may say so: the header is
read right to left, skipping trusted proxies, and the first other hop is the
client (whatever a client wrote further left is its own claim and ignored).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressResolver:
    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(p, strict=False) for p in trusted_proxies
        )

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def of(self, request: web.Request) -> str:
        """The client address of ``request`` (the peer's, unless a trusted proxy forwarded)."""
        peer = request.remote or "unknown"
        if not self._is_trusted(peer):
            return _normal(peer)
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self._is_trusted(hop):
                return _normal(hop)
        return _normal(peer)


def _normal(hop: str) -> str:
    """One spelling per client: an IPv4 address, or the /64 of an IPv6 one (one
    subscriber's network, where each device may pick many addresses)."""
    try:
        ip = ipaddress.ip_address(hop)
    except ValueError:
        return hop[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if not ip.is_loopback:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
