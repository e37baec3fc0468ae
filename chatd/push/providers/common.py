"""What the built-in providers share: the payload as bytes within a size limit, and
one batch sent concurrently with every failure turned into a result."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

from chatd.core.ports.push import Notification, Outcome, PushResult
from chatd.push.http import TransportError

log = logging.getLogger("chatd.push")

#: Push services accept about 4 KiB of payload (Web Push after encryption, FCM
#: data, APNs); the contract's payload is far smaller unless it carries content.
PAYLOAD_LIMIT = 4096
#: RFC 8291 aes128gcm adds an 86-byte header, a 16-byte tag and a padding delimiter.
ENCRYPTED_PAYLOAD_LIMIT = PAYLOAD_LIMIT - 86 - 16 - 1


def without_long_content(payload: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """The payload, less ``content`` if with it the JSON would pass ``limit`` bytes:
    a notification without the text still wakes the device, which then syncs."""
    data = dict(payload)
    if "content" in data and len(orjson.dumps(data)) > limit:
        del data["content"]
    return data


def encode_payload(payload: Mapping[str, Any], limit: int = PAYLOAD_LIMIT) -> bytes:
    return orjson.dumps(without_long_content(payload, limit))


def transport_result(exc: TransportError) -> PushResult:
    """No answer: retried, except an address the guard refused (never worth a retry)."""
    if exc.reason == "address_refused":
        return PushResult(Outcome.FAILED, reason=exc.reason)
    return PushResult(Outcome.RETRY, reason=exc.reason)


async def send_each(
    provider: str,
    batch: Sequence[Notification],
    send_one: Callable[[Notification], Awaitable[PushResult]],
) -> list[PushResult]:
    """``send_one`` for every notification at once; results in batch order.

    A provider's ``send`` must not raise: a transport error is a result, and so
    is anything unexpected (logged with its traceback, retried like a 5xx).
    """

    async def one(notification: Notification) -> PushResult:
        try:
            return await send_one(notification)
        except TransportError as exc:
            return transport_result(exc)
        except Exception:
            log.warning(
                "push %s: unexpected error sending %s",
                provider,
                notification.delivery_id,
                exc_info=True,
            )
            return PushResult(Outcome.RETRY, reason="internal_error")

    return list(await asyncio.gather(*(one(n) for n in batch)))
