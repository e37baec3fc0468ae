"""``webhook``: POST each notification, signed, to one URL of the operator's.

Body ``{delivery_id, user_id, device_id, token, notification}``; header
``X-Chatd-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with
[push.webhook] secret>``. The receiver checks the signature on the raw body
before parsing it, and drops a ``delivery_id`` it has seen (retries repeat it).
The URL is the operator's own configuration, so it is not address-guarded.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from chatd.core.ports.push import InvalidTarget, Notification, Outcome, PushResult, PushTarget
from chatd.plugins import ConfigError, read_settings
from chatd.push.context import PushContext
from chatd.push.http import PushHTTP, TransportError, result_for

SIGNATURE_HEADER = "X-Chatd-Signature"


@dataclass(frozen=True)
class WebhookSettings:
    """``[push.webhook]``."""

    url: str = ""
    secret: str = ""

    @classmethod
    def read(cls, table: Mapping[str, Any], context: PushContext) -> WebhookSettings:
        settings = read_settings(cls, table, context)
        where = f"[{context.section}]"
        parts = urlsplit(settings.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f"{where} url must be an http:// or https:// URL")
        if len(settings.secret) < 16:
            raise ConfigError(f"{where} secret must be at least 16 characters")
        return settings


def signature(secret: str, body: bytes) -> str:
    """The ``X-Chatd-Signature`` value of ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookProvider:
    name = "webhook"

    def __init__(self, settings: WebhookSettings, context: PushContext) -> None:
        self._settings = settings
        self._http = PushHTTP(timeout_s=context.timeout_s, guarded=False, allow_private=True)

    def check_target(self, target: PushTarget) -> None:
        if not target.token:
            raise InvalidTarget("the webhook provider needs a token")

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    async def send(self, batch: Sequence[Notification]) -> Sequence[PushResult]:
        return await asyncio.gather(*(self._one(n) for n in batch))

    async def _one(self, note: Notification) -> PushResult:
        body = orjson.dumps(
            {
                "delivery_id": note.delivery_id,
                "user_id": note.target.user_id,
                "device_id": note.target.device_id,
                "token": note.target.token,
                "notification": dict(note.payload),
            }
        )
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self._settings.secret, body),
        }
        try:
            reply = await self._http.post(self._settings.url, data=body, headers=headers)
        except TransportError as exc:
            return PushResult(Outcome.RETRY, reason=exc.reason)
        return result_for(reply)


def create(settings: Mapping[str, Any], context: PushContext) -> WebhookProvider:
    """The ``chatd.push`` entry point ``webhook``."""
    return WebhookProvider(WebhookSettings.read(settings, context), context)
