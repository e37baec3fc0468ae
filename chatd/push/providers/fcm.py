"""``fcm``: Firebase Cloud Messaging, HTTP v1 API, with a service account.

A self-signed RS256 JWT (the service account's key, PyJWT) is exchanged for an
OAuth2 access token at the token URI; the token is kept until a minute before
it expires, and fetched again once if FCM answers 401. Both URLs are the
operator's (the table, or the service-account file), so the client is not
guarded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import orjson

from chatd.core.ports.push import InvalidTarget, Notification, Outcome, PushResult, PushTarget
from chatd.plugins import ConfigError, read_settings
from chatd.push.context import PushContext
from chatd.push.http import HTTPReply, PushHTTP, TransportError, result_for, retry_after_s
from chatd.push.providers.common import (
    PAYLOAD_LIMIT,
    send_each,
    transport_result,
    without_long_content,
)

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
#: An access token is fetched again this long before Google says it expires.
TOKEN_MARGIN_S = 60.0
#: FCM's ``errorCode``s (and gRPC statuses) that mean the token is dead for good.
GONE_CODES = frozenset({"UNREGISTERED", "NOT_FOUND"})
FAILED_CODES = frozenset({"INVALID_ARGUMENT", "SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR"})


@dataclass(frozen=True)
class FCMSettings:
    """``[push.fcm]``."""

    #: Path of the service account's JSON key (Firebase console, Project settings).
    service_account_file: str = ""
    #: Empty: the service account's ``project_id``.
    project_id: str = ""
    base_url: str = "https://fcm.googleapis.com"
    #: Empty: the service account's ``token_uri``.
    token_url: str = ""
    #: How long FCM keeps a message for an offline device.
    ttl_s: int = 86400
    #: Alert text for iOS devices reached through FCM (Android apps get data only).
    alert_text: str = "New message"

    @classmethod
    def read(cls, table: Mapping[str, Any], context: PushContext) -> FCMSettings:
        settings = read_settings(cls, table, context)
        if not settings.service_account_file:
            raise ConfigError(
                f"[{context.section}] service_account_file is required "
                "(path of the service account's JSON key)"
            )
        if not settings.base_url.startswith(("https://", "http://")):
            raise ConfigError(f"[{context.section}] base_url must be an http(s) URL")
        if settings.ttl_s < 0:
            raise ConfigError(f"[{context.section}] ttl_s must be 0 or more")
        return settings


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    private_key: str
    private_key_id: str
    project_id: str
    token_uri: str

    @classmethod
    def load(cls, path: str, section: str) -> ServiceAccount:
        where = f"[{section}] service_account_file"
        try:
            raw = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {path!r} ({exc.strerror})") from None
        except ValueError:
            raise ConfigError(f"{where}: {path!r} is not JSON") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: {path!r} is not a service account key")
        missing = [k for k in ("client_email", "private_key") if not isinstance(raw.get(k), str)]
        if missing:
            raise ConfigError(f"{where}: {path!r} lacks {', '.join(missing)}")
        return cls(
            client_email=raw["client_email"],
            private_key=raw["private_key"],
            private_key_id=str(raw.get("private_key_id", "")),
            project_id=str(raw.get("project_id", "")),
            token_uri=str(raw.get("token_uri") or DEFAULT_TOKEN_URL),
        )


def data_values(payload: Mapping[str, Any]) -> dict[str, str]:
    """FCM data values must be strings: strings as they are, numbers and booleans
    as JSON, nulls left out."""
    data: dict[str, str] = {}
    for key, value in payload.items():
        if value is None:
            continue
        data[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
    return data


def error_code(reply: HTTPReply) -> str:
    """FCM's ``errorCode`` from the error's details, else its gRPC status, else ``""``."""
    try:
        error = orjson.loads(reply.body).get("error", {})
        for detail in error.get("details") or ():
            if detail.get("errorCode"):
                return str(detail["errorCode"])
        return str(error.get("status") or "")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return ""


def fcm_result(reply: HTTPReply) -> PushResult:
    if 200 <= reply.status < 300:
        return PushResult(Outcome.DELIVERED)
    code = error_code(reply)
    if code in GONE_CODES or reply.status == 404:
        return PushResult(Outcome.GONE, reason=code or "http_404")
    if reply.status == 429 or reply.status >= 500:
        delay = retry_after_s(reply.headers.get("Retry-After"))
        return PushResult(Outcome.RETRY, retry_after_s=delay, reason=code or f"http_{reply.status}")
    if code in FAILED_CODES:
        return PushResult(Outcome.FAILED, reason=code)
    result = result_for(reply)
    return PushResult(result.outcome, result.retry_after_s, code or result.reason)


class TokenError(Exception):
    """The token endpoint refused or failed; ``result`` says what to do with the batch."""

    def __init__(self, result: PushResult) -> None:
        super().__init__(result.reason)
        self.result = result


class FCMProvider:
    name = "fcm"

    def __init__(self, settings: FCMSettings, account: ServiceAccount, context: PushContext):
        self._settings = settings
        self._account = account
        self._project_id = settings.project_id or account.project_id
        if not self._project_id:
            raise ConfigError(
                f"[{context.section}] project_id is required (the service account has none)"
            )
        self._token_url = settings.token_url or account.token_uri
        self._send_url = (
            f"{settings.base_url.rstrip('/')}/v1/projects/{self._project_id}/messages:send"
        )
        self._http = PushHTTP(timeout_s=context.timeout_s, guarded=False, allow_private=True)
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    def check_target(self, target: PushTarget) -> None:
        if not target.token:
            raise InvalidTarget("fcm needs a token (the app's FCM registration token)")

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    def assertion(self) -> str:
        """The self-signed JWT the token endpoint exchanges for an access token."""
        now = int(time.time())
        claims = {
            "iss": self._account.client_email,
            "scope": SCOPE,
            "aud": self._token_url,
            "iat": now,
            "exp": now + 3600,
        }
        headers = {"kid": self._account.private_key_id} if self._account.private_key_id else None
        return jwt.encode(claims, self._account.private_key, algorithm="RS256", headers=headers)

    async def access_token(self, *, stale: str | None = None) -> str:
        """The cached token, or a new one if it is about to expire or is ``stale``
        (the one FCM just refused). One exchange at a time for the whole batch."""
        async with self._token_lock:
            fresh = self._token is not None and time.monotonic() < self._token_expires
            if fresh and self._token != stale:
                assert self._token is not None
                return self._token
            body = urlencode({"grant_type": GRANT_TYPE, "assertion": self.assertion()})
            reply = await self._http.post(
                self._token_url,
                data=body.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            if reply.status != 200:
                result = result_for(reply)
                reason = f"token_http_{reply.status}"
                raise TokenError(PushResult(result.outcome, result.retry_after_s, reason))
            try:
                answer = orjson.loads(reply.body)
                token = str(answer["access_token"])
                lifetime = float(answer.get("expires_in", 3600))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise TokenError(PushResult(Outcome.RETRY, reason="token_bad_reply")) from None
            self._token = token
            self._token_expires = time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN_S)
            return token

    def message(self, notification: Notification) -> dict[str, Any]:
        payload = without_long_content(notification.payload, PAYLOAD_LIMIT)
        title = payload.get("chat_title") or payload.get("sender_name") or ""
        alert = {"title": title, "body": payload.get("content") or self._settings.alert_text}
        return {
            "token": notification.target.token,
            "data": data_values(payload),
            "android": {
                "collapse_key": notification.collapse_key,
                "priority": "high",
                "ttl": f"{self._settings.ttl_s}s",
            },
            "apns": {
                "headers": {
                    "apns-collapse-id": notification.collapse_key[:64],
                    "apns-push-type": "alert",
                },
                "payload": {"aps": {"alert": alert, "thread-id": str(payload.get("chat_id", ""))}},
            },
        }

    async def send(self, batch: Sequence[Notification]) -> Sequence[PushResult]:
        try:  # one exchange before the batch rather than one per waiting message
            await self.access_token()
        except TokenError as exc:
            return [exc.result] * len(batch)
        except TransportError as exc:
            return [transport_result(exc)] * len(batch)
        return await send_each(self.name, batch, self._send_one)

    async def _send_one(self, notification: Notification) -> PushResult:
        body = orjson.dumps({"message": self.message(notification)})
        try:
            token = await self.access_token()
            reply = await self._post(body, token)
            if reply.status == 401:
                reply = await self._post(body, await self.access_token(stale=token))
        except TokenError as exc:
            return exc.result
        return fcm_result(reply)

    async def _post(self, body: bytes, token: str) -> HTTPReply:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return await self._http.post(self._send_url, data=body, headers=headers)


def create(settings: Mapping[str, Any], context: PushContext) -> FCMProvider:
    parsed = FCMSettings.read(settings, context)
    account = ServiceAccount.load(parsed.service_account_file, context.section)
    try:
        jwt.encode({"probe": 1}, account.private_key, algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError):
        raise ConfigError(
            f"[{context.section}] service_account_file: its private_key is not an RSA PEM key"
        ) from None
    return FCMProvider(parsed, account, context)
