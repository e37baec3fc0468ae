"""A chatd push provider for Gotify (https://gotify.net).

Gotify is a self-hosted notification server: an app posts to
``POST {url}/message`` with an application token (``X-Gotify-Key``), and the
Gotify Android app (or any WebSocket client) shows it. Here each device
registers the token of a Gotify application as its push target
(``PUT /devices/{id}/push {"provider": "gotify", "token": "..."}``), and the
server URL is the operator's, from ``[push.gotify] url``.

This is the worked example of docs/plugins.md, "Writing a push provider".
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from chatd.core.ports.push import InvalidTarget, Notification, Outcome, PushResult, PushTarget
from chatd.plugins import ConfigError, read_settings
from chatd.push.context import PushContext
from chatd.push.http import PushHTTP, TransportError, result_for

__all__ = ["GotifyProvider", "GotifySettings", "create"]


@dataclass(frozen=True)
class GotifySettings:
    """``[push.gotify]``: the keys an operator may set, with their defaults."""

    #: The Gotify server, e.g. ``https://gotify.example.org`` (required).
    url: str = ""
    #: Gotify priority: 0 silent, 1-3 quiet, 4-7 sound, 8-10 also wakes the screen.
    priority: int = 5
    #: The message text when the payload has no ``content``.
    text: str = "New message"

    @classmethod
    def read(cls, table: Mapping[str, Any], context: PushContext) -> GotifySettings:
        # read_settings refuses unknown keys and wrong types, naming [push.gotify] <key>;
        # the checks it cannot know are the provider's, worded the same way.
        settings = read_settings(cls, table, context)
        if not settings.url.startswith(("https://", "http://")):
            raise ConfigError(f"[{context.section}] url must be the Gotify server's http(s) URL")
        if not 0 <= settings.priority <= 10:
            raise ConfigError(f"[{context.section}] priority must be between 0 and 10")
        return settings


class GotifyProvider:
    name = "gotify"

    def __init__(self, settings: GotifySettings, context: PushContext) -> None:
        self._settings = settings
        self._url = settings.url.rstrip("/") + "/message"
        # The URL is the operator's, not a device's: no address guard needed.
        self._http = PushHTTP(timeout_s=context.timeout_s, guarded=False, allow_private=True)

    def check_target(self, target: PushTarget) -> None:
        if not target.token:
            raise InvalidTarget("gotify needs a token (a Gotify application token)")

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    def message(self, notification: Notification) -> dict[str, Any]:
        payload = dict(notification.payload)
        return {
            "title": payload.get("chat_title") or payload.get("sender_name") or "chatd",
            "message": payload.get("content") or self._settings.text,
            "priority": self._settings.priority,
            # Extras are namespaced; a client reads chatd's payload from its own key.
            "extras": {"chatd::notification": payload},
        }

    async def send(self, batch: Sequence[Notification]) -> Sequence[PushResult]:
        return await asyncio.gather(*(self._send_one(n) for n in batch))

    async def _send_one(self, notification: Notification) -> PushResult:
        assert notification.target.token is not None
        headers = {
            "X-Gotify-Key": notification.target.token,
            "Content-Type": "application/json",
        }
        try:
            body = orjson.dumps(self.message(notification))
            reply = await self._http.post(self._url, data=body, headers=headers)
        except TransportError as exc:  # no answer (refused, timeout): try again later
            return PushResult(Outcome.RETRY, reason=exc.reason)
        except Exception as exc:  # send must never raise: one bad notification is a result
            return PushResult(Outcome.FAILED, reason=type(exc).__name__)
        # 2xx delivered; 404/410 gone; 429/5xx retried (Retry-After honoured); the
        # rest (401/403: a token Gotify does not know) failed for good.
        return result_for(reply)


def create(settings: Mapping[str, Any], context: PushContext) -> GotifyProvider:
    """The factory chatd calls with the ``[push.gotify]`` table."""
    return GotifyProvider(GotifySettings.read(settings, context), context)
