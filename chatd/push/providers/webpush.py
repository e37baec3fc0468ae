"""``webpush``: Web Push to browsers (RFC 8030), encrypted (RFC 8291, ``aes128gcm``)
and signed with the server's VAPID key (RFC 8292).

The crypto is py-vapid's (the JWT and its ``vapid t=...,k=...`` header) and
http_ece's (the body), the two libraries pywebpush is built on. pywebpush's
own ``webpush_async`` is not used because it also sends the request, through
its own aiohttp call that follows redirects and reads any reply size; built
here, the request goes through ``PushHTTP`` like every other provider's, so
the endpoint (chosen by the browser) passes the address guard on each connect.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, VapidException

from chatd.core.ports.push import InvalidTarget, Notification, PushResult, PushTarget
from chatd.plugins import ConfigError, read_settings
from chatd.push.context import PushContext
from chatd.push.http import PushHTTP, result_for
from chatd.push.providers import ece
from chatd.push.providers.common import ENCRYPTED_PAYLOAD_LIMIT, encode_payload, send_each

URGENCIES = ("very-low", "low", "normal", "high")
#: A VAPID JWT may live at most 24 hours (RFC 8292 §2); ours live 12 and are
#: reused per push service origin until an hour before they expire.
JWT_LIFETIME_S = 12 * 3600
JWT_REUSE_S = JWT_LIFETIME_S - 3600


def topic_for(collapse_key: str) -> str:
    """The ``Topic`` header: at most 32 base64url characters (RFC 8030 §5.4), so a
    digest of the collapse key rather than the key itself (which also stays private)."""
    return ece.b64url_encode(hashlib.sha256(collapse_key.encode()).digest())[:32]


def load_vapid_key(path: str, section: str) -> Vapid:
    """The VAPID key pair from a PEM file (SEC1 as ``openssl ecparam`` writes it,
    or PKCS#8). Read here rather than by ``Vapid.from_file``, which would quietly
    generate a new key when the file is missing."""
    where = f"[{section}] vapid_private_key"
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path!r} ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: {path!r} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"{where}: {path!r} must hold a P-256 (prime256v1) EC key")
    return Vapid(private_key=key)


@dataclass(frozen=True)
class WebPushSettings:
    """``[push.webpush]``."""

    #: Path of the PEM file with the VAPID private key (P-256).
    vapid_private_key: str = ""
    #: Who to contact about these pushes: ``mailto:admin@example.org`` or an https URL.
    subject: str = ""
    #: How long the push service keeps a notification for an offline browser.
    ttl_s: int = 86400
    #: ``Urgency`` header: very-low, low, normal or high.
    urgency: str = "high"

    @classmethod
    def read(cls, table: Mapping[str, Any], context: PushContext) -> WebPushSettings:
        settings = read_settings(cls, table, context)
        where = f"[{context.section}]"
        if not settings.vapid_private_key:
            raise ConfigError(f"{where} vapid_private_key is required (path of a PEM file)")
        if not settings.subject.startswith(("mailto:", "https://")):
            raise ConfigError(f"{where} subject must be a mailto: or https:// URL")
        if settings.urgency not in URGENCIES:
            raise ConfigError(f"{where} urgency must be one of {', '.join(URGENCIES)}")
        if settings.ttl_s < 0:
            raise ConfigError(f"{where} ttl_s must be 0 or more")
        return settings


class WebPushProvider:
    name = "webpush"

    def __init__(self, settings: WebPushSettings, vapid: Vapid, context: PushContext) -> None:
        self._settings = settings
        self._vapid = vapid
        self._http = PushHTTP(
            timeout_s=context.timeout_s,
            guarded=True,
            allow_private=context.allow_private_endpoints,
        )
        #: origin -> (Authorization header, reuse until)
        self._auth: dict[str, tuple[str, float]] = {}

    def check_target(self, target: PushTarget) -> None:
        if not target.endpoint:
            raise InvalidTarget("webpush needs an endpoint")
        ece.check_keys(target.p256dh, target.auth)

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    def authorization(self, endpoint: str) -> str:
        """``vapid t=<JWT>,k=<public key>`` for the endpoint's origin (the JWT's ``aud``)."""
        parts = urlsplit(endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        cached = self._auth.get(origin)
        if cached is not None and cached[1] > now:
            return cached[0]
        claims = {"aud": origin, "sub": self._settings.subject, "exp": int(now) + JWT_LIFETIME_S}
        header = self._vapid.sign(claims)["Authorization"]
        if len(self._auth) > 1024:
            self._auth.clear()
        self._auth[origin] = (header, now + JWT_REUSE_S)
        return header

    async def send(self, batch: Sequence[Notification]) -> Sequence[PushResult]:
        return await send_each(self.name, batch, self._send_one)

    async def _send_one(self, notification: Notification) -> PushResult:
        target = notification.target
        assert target.endpoint and target.p256dh and target.auth
        plain = encode_payload(notification.payload, ENCRYPTED_PAYLOAD_LIMIT)
        headers = {
            "Authorization": self.authorization(target.endpoint),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self._settings.ttl_s),
            "Urgency": self._settings.urgency,
            "Topic": topic_for(notification.collapse_key),
        }
        body = ece.encrypt(plain, target.p256dh, target.auth)
        reply = await self._http.post(target.endpoint, data=body, headers=headers)
        return result_for(reply)


def create(settings: Mapping[str, Any], context: PushContext) -> WebPushProvider:
    parsed = WebPushSettings.read(settings, context)
    vapid = load_vapid_key(parsed.vapid_private_key, context.section)
    try:  # py-vapid's own check of the subject (an address or an https host)
        vapid.sign({"aud": "https://push.example", "sub": parsed.subject})
    except VapidException:
        raise ConfigError(
            f"[{context.section}] subject {parsed.subject!r} is not a valid mailto: "
            "address or https:// URL"
        ) from None
    return WebPushProvider(parsed, vapid, context)
