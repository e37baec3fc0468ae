"""The HTTP client push providers share: bounded, timed, guarded, and one mapping
from an HTTP answer to a ``PushResult`` so every provider retries alike."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from chatd.core.ports.push import InvalidTarget, Outcome, PushResult
from chatd.push.guard import GuardedResolver, check_literal_host

#: Push services answer with a few hundred bytes; more is read no further.
MAX_REPLY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HTTPReply:
    status: int
    headers: Mapping[str, str]
    body: bytes


class TransportError(Exception):
    """No HTTP answer: refused address, connection error or timeout.

    ``reason`` is short and never names the endpoint (it goes to metrics and admins).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PushHTTP:
    """One ``aiohttp.ClientSession`` per provider.

    ``guarded`` is for URLs that devices choose (Web Push, UnifiedPush): their
    addresses must be public unless ``allow_private``. URLs from the operator's
    own configuration (webhook, FCM, APNs base URLs) are not guarded.
    """

    def __init__(self, *, timeout_s: float, guarded: bool, allow_private: bool) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._guarded = guarded and not allow_private
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        resolver = GuardedResolver(allow_private=False) if self._guarded else None
        connector = aiohttp.TCPConnector(limit=64, resolver=resolver)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, *, data: bytes, headers: Mapping[str, str]) -> HTTPReply:
        """POST ``data``; never follows redirects (a redirect could lead anywhere)."""
        assert self._session is not None, "PushHTTP.open() was not called"
        try:
            if self._guarded:
                check_literal_host(url, allow_private=False)
            async with self._session.post(
                url, data=data, headers=dict(headers), allow_redirects=False
            ) as response:
                body = await response.content.read(MAX_REPLY_BYTES)
                return HTTPReply(response.status, dict(response.headers), body)
        except InvalidTarget:
            raise TransportError("address_refused") from None
        except TimeoutError:
            raise TransportError("timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            # aiohttp keeps the resolver's refusal as the cause, not in its own message.
            said = f"{exc} {exc.__cause__} {getattr(exc, 'os_error', '')}"
            reason = "address_refused" if "non-public" in said else "network"
            raise TransportError(reason) from None


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def result_for(reply: HTTPReply) -> PushResult:
    """The usual mapping: 2xx delivered; 404/410 gone; 408, 429 and 5xx retried
    (honouring ``Retry-After``); any other answer failed for good."""
    status = reply.status
    if 200 <= status < 300:
        return PushResult(Outcome.DELIVERED)
    if status in (404, 410):
        return PushResult(Outcome.GONE, reason=f"http_{status}")
    if status in (408, 429) or status >= 500:
        delay = retry_after_s(reply.headers.get("Retry-After"))
        return PushResult(Outcome.RETRY, retry_after_s=delay, reason=f"http_{status}")
    return PushResult(Outcome.FAILED, reason=f"http_{status}")
