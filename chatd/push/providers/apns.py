"""``apns``: Apple Push Notification service, token-based (a ``.p8`` key), HTTP/2.

The client is httpx with h2, not aioapns: aioapns connects only to Apple's two
hosts on port 443 (class constants, no base URL), so it cannot be pointed at a
local test server, while httpx speaks HTTP/2 to any ``base_url`` (TLS with ALPN
for https://, prior-knowledge h2c for http://, which is what the tests use) and
is widely used and maintained. The provider token is an ES256 JWT (``kid`` =
key_id, ``iss`` = team_id, ``iat``) made with PyJWT and renewed every 50
minutes (Apple refuses tokens older than an hour, and renewing more often than
every 20 minutes).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chatd.core.ports.push import InvalidTarget, Notification, Outcome, PushResult, PushTarget
from chatd.plugins import ConfigError, read_settings
from chatd.push.context import PushContext
from chatd.push.http import HTTPReply, TransportError, retry_after_s
from chatd.push.providers.common import PAYLOAD_LIMIT, send_each, without_long_content

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"
PUSH_TYPES = ("alert", "background")
#: The provider token is renewed this often (Apple: between 20 and 60 minutes).
JWT_RENEW_S = 50 * 60
#: APNs' answers that mean the device token is no good any more.
GONE_REASONS = frozenset({"Unregistered", "BadDeviceToken"})
#: 403 answers that a fresh provider token may cure (tried once).
TOKEN_REASONS = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True)
class APNsSettings:
    """``[push.apns]``."""

    #: Path of the ``AuthKey_<key_id>.p8`` file (Apple Developer, Keys).
    key_file: str = ""
    key_id: str = ""
    team_id: str = ""
    #: The app's bundle id (``apns-topic``).
    topic: str = ""
    #: Apple's development environment (apps built for development) instead of production.
    sandbox: bool = False
    #: Empty: Apple's production or sandbox host, from ``sandbox``.
    base_url: str = ""
    #: ``alert`` (shown by iOS) or ``background`` (wakes the app, shows nothing).
    push_type: str = "alert"
    #: How long APNs keeps a notification for an offline device (``apns-expiration``).
    ttl_s: int = 86400
    #: The alert's text when the payload has no ``content``.
    alert_text: str = "New message"

    @classmethod
    def read(cls, table: Mapping[str, Any], context: PushContext) -> APNsSettings:
        settings = read_settings(cls, table, context)
        where = f"[{context.section}]"
        for key in ("key_file", "key_id", "team_id", "topic"):
            if not getattr(settings, key):
                raise ConfigError(f"{where} {key} is required")
        if settings.push_type not in PUSH_TYPES:
            raise ConfigError(f"{where} push_type must be alert or background")
        if settings.base_url and not settings.base_url.startswith(("https://", "http://")):
            raise ConfigError(f"{where} base_url must be an http(s) URL")
        if settings.ttl_s < 0:
            raise ConfigError(f"{where} ttl_s must be 0 or more")
        return settings


def load_key(path: str, section: str) -> ec.EllipticCurvePrivateKey:
    where = f"[{section}] key_file"
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path!r} ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: {path!r} is not a PEM private key (.p8)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"{where}: {path!r} is not an APNs (P-256) key")
    return key


def apns_id(delivery_id: str) -> str:
    """``apns-id``: the delivery id if it is a UUID, else a UUID derived from it,
    so every attempt at one notification carries the same id."""
    try:
        return str(uuid.UUID(delivery_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"chatd:push:{delivery_id}"))


def apns_result(reply: HTTPReply) -> PushResult:
    if reply.status == 200:
        return PushResult(Outcome.DELIVERED)
    try:
        reason = str(orjson.loads(reply.body).get("reason") or "")
    except (orjson.JSONDecodeError, AttributeError):
        reason = ""
    if reply.status == 410 or reason in GONE_REASONS:
        return PushResult(Outcome.GONE, reason=reason or "http_410")
    if reply.status == 429 or reply.status >= 500:
        delay = retry_after_s(reply.headers.get("retry-after"))
        return PushResult(Outcome.RETRY, delay, reason or f"http_{reply.status}")
    return PushResult(Outcome.FAILED, reason=reason or f"http_{reply.status}")


class APNsProvider:
    name = "apns"

    def __init__(
        self, settings: APNsSettings, key: ec.EllipticCurvePrivateKey, context: PushContext
    ) -> None:
        self._settings = settings
        self._key = key
        self._timeout_s = context.timeout_s
        apple = SANDBOX_URL if settings.sandbox else PRODUCTION_URL
        self._base_url = settings.base_url or apple
        self._client: httpx.AsyncClient | None = None
        self._jwt = ""
        self._jwt_made = 0.0

    def check_target(self, target: PushTarget) -> None:
        if not target.token or not _HEX.fullmatch(target.token):
            raise InvalidTarget("apns needs a token (the device token, in hex)")

    async def open(self) -> None:
        # http1=False: HTTP/2 only; over http:// that is prior-knowledge h2c.
        self._client = httpx.AsyncClient(
            base_url=self._base_url.rstrip("/"),
            http1=False,
            http2=True,
            timeout=httpx.Timeout(self._timeout_s),
            follow_redirects=False,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def provider_token(self, *, renew: bool = False) -> str:
        now = time.time()
        if renew or not self._jwt or now - self._jwt_made >= JWT_RENEW_S:
            self._jwt = jwt.encode(
                {"iss": self._settings.team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._settings.key_id},
            )
            self._jwt_made = now
        return self._jwt

    def body(self, notification: Notification) -> bytes:
        payload = without_long_content(notification.payload, PAYLOAD_LIMIT - 256)
        if self._settings.push_type == "background":
            aps: dict[str, Any] = {"content-available": 1}
        else:
            title = payload.get("chat_title") or payload.get("sender_name") or ""
            body = payload.get("content") or self._settings.alert_text
            aps = {"alert": {"title": title, "body": body}, "sound": "default"}
        aps["thread-id"] = str(payload.get("chat_id", ""))
        return orjson.dumps({**payload, "aps": aps})

    def headers(self, notification: Notification) -> dict[str, str]:
        alert = self._settings.push_type == "alert"
        return {
            "apns-topic": self._settings.topic,
            "apns-push-type": self._settings.push_type,
            "apns-priority": "10" if alert else "5",
            "apns-expiration": str(int(time.time()) + self._settings.ttl_s),
            "apns-collapse-id": notification.collapse_key.encode()[:64].decode("utf-8", "ignore"),
            "apns-id": apns_id(notification.delivery_id),
        }

    async def send(self, batch: Sequence[Notification]) -> Sequence[PushResult]:
        return await send_each(self.name, batch, self._send_one)

    async def _send_one(self, notification: Notification) -> PushResult:
        token = notification.target.token
        path = f"/3/device/{token}"
        body = self.body(notification)
        headers = self.headers(notification)
        reply = await self._post(path, body, headers, self.provider_token())
        if reply.status == 403 and apns_result(reply).reason in TOKEN_REASONS:
            reply = await self._post(path, body, headers, self.provider_token(renew=True))
        return apns_result(reply)

    async def _post(
        self, path: str, body: bytes, headers: dict[str, str], provider_token: str
    ) -> HTTPReply:
        assert self._client is not None, "APNsProvider.open() was not called"
        headers = {**headers, "authorization": f"bearer {provider_token}"}
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.post(path, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            raise TransportError("timeout") from None
        except (httpx.HTTPError, OSError):
            raise TransportError("network") from None
        return HTTPReply(response.status_code, dict(response.headers), response.content)


def create(settings: Mapping[str, Any], context: PushContext) -> APNsProvider:
    parsed = APNsSettings.read(settings, context)
    return APNsProvider(parsed, load_key(parsed.key_file, context.section), context)
