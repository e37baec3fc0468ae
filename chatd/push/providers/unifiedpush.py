"""``unifiedpush``: POST the payload to the endpoint a UnifiedPush distributor
(ntfy, NextPush, a Gotify bridge...) gave the device.

The endpoint is chosen by the device, so requests go through the guarded
client. With ``keys`` the body is encrypted as Web Push (RFC 8291,
``aes128gcm``), which newer UnifiedPush connectors expect; without them it is
the plain JSON payload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chatd.core.ports.push import InvalidTarget, Notification, PushResult, PushTarget
from chatd.plugins import ConfigError, read_settings
from chatd.push.context import PushContext
from chatd.push.http import PushHTTP, result_for
from chatd.push.providers import ece
from chatd.push.providers.common import (
    ENCRYPTED_PAYLOAD_LIMIT,
    PAYLOAD_LIMIT,
    encode_payload,
    send_each,
)


@dataclass(frozen=True)
class UnifiedPushSettings:
    """``[push.unifiedpush]``."""

    #: How long the distributor keeps a notification for an unreachable device (``TTL``).
    ttl_s: int = 86400

    @classmethod
    def read(cls, table: Mapping[str, Any], context: PushContext) -> UnifiedPushSettings:
        settings = read_settings(cls, table, context)
        if settings.ttl_s < 0:
            raise ConfigError(f"[{context.section}] ttl_s must be 0 or more")
        return settings


class UnifiedPushProvider:
    name = "unifiedpush"

    def __init__(self, settings: UnifiedPushSettings, context: PushContext) -> None:
        self._settings = settings
        self._http = PushHTTP(
            timeout_s=context.timeout_s,
            guarded=True,
            allow_private=context.allow_private_endpoints,
        )

    def check_target(self, target: PushTarget) -> None:
        if not target.endpoint:
            raise InvalidTarget("unifiedpush needs an endpoint")
        if target.p256dh or target.auth:
            ece.check_keys(target.p256dh, target.auth)

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    async def send(self, batch: Sequence[Notification]) -> Sequence[PushResult]:
        return await send_each(self.name, batch, self._send_one)

    async def _send_one(self, notification: Notification) -> PushResult:
        target = notification.target
        assert target.endpoint is not None
        headers = {"TTL": str(self._settings.ttl_s)}
        if target.p256dh and target.auth:
            plain = encode_payload(notification.payload, ENCRYPTED_PAYLOAD_LIMIT)
            body = ece.encrypt(plain, target.p256dh, target.auth)
            headers["Content-Encoding"] = "aes128gcm"
            headers["Content-Type"] = "application/octet-stream"
        else:
            body = encode_payload(notification.payload, PAYLOAD_LIMIT)
            headers["Content-Type"] = "application/json"
        reply = await self._http.post(target.endpoint, data=body, headers=headers)
        return result_for(reply)


def create(settings: Mapping[str, Any], context: PushContext) -> UnifiedPushProvider:
    return UnifiedPushProvider(UnifiedPushSettings.read(settings, context), context)
