"""Server-side request forgery guard for endpoints that devices choose.

A Web Push or UnifiedPush endpoint is a URL a client gives us; without a check,
a client could make chatd POST to its own admin port, a cloud metadata service
(169.254.169.254) or anything else on the server's private network. The
address check runs when the endpoint is registered and again when each request
connects (the resolver below), so a name that resolves to a public address at
registration and to a private one later (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from chatd.core.ports.push import InvalidTarget

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address: not loopback, private,
    link-local, shared (100.64/10), multicast, reserved or unspecified, in either
    family, including IPv4 addresses wrapped in IPv6 forms."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return is_public(inner)
    return ip.is_global and not ip.is_multicast


def _check_address(host: str, address: str, allow_private: bool) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if not allow_private and not is_public(ip):
        raise InvalidTarget(f"endpoint host {host!r} points to a non-public address")


async def check_endpoint(url: str, *, allow_private: bool) -> None:
    """Raise ``InvalidTarget`` unless ``url`` is an https URL (http too when private
    endpoints are allowed) whose host resolves only to public addresses."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidTarget("endpoint is not a valid URL") from exc
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise InvalidTarget("endpoint must be an https:// URL")
    host = parts.hostname
    if not host:
        raise InvalidTarget("endpoint has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidTarget(f"endpoint host {host!r} does not resolve") from exc
    for info in infos:
        _check_address(host, str(info[4][0]), allow_private)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name if any of its addresses is not public.

    aiohttp connects to exactly the addresses its resolver returns, so checking
    here closes the gap between the registration check and the connection.
    """

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                _check_address(host, result["host"], self._allow_private)
            except InvalidTarget as exc:
                raise OSError(str(exc)) from None
        return results

    async def close(self) -> None:
        await self._inner.close()


def check_literal_host(url: str, *, allow_private: bool) -> None:
    """Refuse a URL whose host is an IP literal that is not public.

    aiohttp does not consult the resolver for IP literals, so those are checked
    here, before the request, instead.
    """
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return
    _check_address(host, host, allow_private)
