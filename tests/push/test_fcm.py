"""The fcm provider against a local OAuth2 token endpoint and FCM v1 endpoint that
check what Google's do: the RS256 assertion, the bearer token, the message shape."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chatd.core.ports.push import InvalidTarget, Outcome, PushTarget
from chatd.plugins import ConfigError
from chatd.push.providers import fcm
from tests.push.provider_fakes import PAYLOAD, FakeService, Request, context, notification

TOKEN = PushTarget("u1", "d1", "fcm", token="fcm-registration-token")
SEND_PATH = "/v1/projects/chatd-test/messages:send"


class FakeGoogle:
    """Google's token endpoint and FCM's send endpoint in one local server."""

    def __init__(self, key: rsa.RSAPrivateKey, expires_in: float = 3600) -> None:
        self.public_key = key.public_key()
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.service = FakeService(self.route)
        self.messages: list[dict[str, Any]] = []

    def route(self, request: Request):
        if request.path == "/token":
            return self.token(request)
        if request.path == SEND_PATH:
            bearer = request.headers.get("authorization", "")
            token = bearer.removeprefix("Bearer ")
            if token not in self.issued or token in self.revoked:
                return (401, {}, b'{"error": {"code": 401, "status": "UNAUTHENTICATED"}}')
            self.messages.append(orjson.loads(request.body)["message"])
        return None  # the script's answer

    def token(self, request: Request):
        form = parse_qs(request.body.decode())
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        claims = jwt.decode(
            form["assertion"][0],
            self.public_key,
            algorithms=["RS256"],
            audience=f"{self.service.url}/token",
        )
        assert claims["iss"] == "chatd@chatd-test.iam.gserviceaccount.com"
        assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
        assert claims["exp"] - claims["iat"] <= 3600
        token = f"access-{len(self.issued) + 1}"
        self.issued.append(token)
        body = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return (200, {"Content-Type": "application/json"}, orjson.dumps(body))


@pytest.fixture
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_account(path: Path, key: rsa.RSAPrivateKey, token_uri: str) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "chatd-test",
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": "chatd@chatd-test.iam.gserviceaccount.com",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(account))
    return path


async def provider_for(tmp_path, google: FakeGoogle, key, **kw: Any) -> fcm.FCMProvider:
    account = write_account(tmp_path / "sa.json", key, f"{google.service.url}/token")
    table = {"service_account_file": str(account), "base_url": google.service.url}
    provider = fcm.create(table, context(tmp_path, "fcm", **kw))
    await provider.open()
    return provider


async def test_the_token_is_exchanged_once_and_the_message_has_the_v1_shape(
    tmp_path, aiohttp_server, rsa_key
):
    google = FakeGoogle(rsa_key)
    google.service.script.default = (200, {}, b'{"name": "projects/chatd-test/messages/1"}')
    async with google.service.running(aiohttp_server):
        provider = await provider_for(tmp_path, google, rsa_key)
        try:
            first = await provider.send([notification(TOKEN), notification(TOKEN)])
            second = await provider.send([notification(TOKEN, collapse_key="chat-2")])
        finally:
            await provider.close()
    assert [r.outcome for r in [*first, *second]] == [Outcome.DELIVERED] * 3
    assert google.issued == ["access-1"]
    message = google.messages[0]
    assert message["token"] == "fcm-registration-token"
    assert message["data"] == {
        "type": "new_message",
        "chat_id": "chat-1",
        "message_id": "msg-1",
        "seq": "7",
        "sender_id": "user-2",
        "sender_name": "Bob",
        "unread_count": "3",
        "timestamp": "2026-01-02T03:04:05Z",
    }
    assert all(isinstance(v, str) for v in message["data"].values())
    assert message["android"]["collapse_key"] == "chat-1"
    assert message["android"]["priority"] == "high"
    assert message["apns"]["headers"]["apns-collapse-id"] == "chat-1"
    assert message["apns"]["payload"]["aps"]["alert"] == {"title": "Bob", "body": "New message"}
    assert google.messages[2]["android"]["collapse_key"] == "chat-2"


async def test_an_expired_token_is_replaced(tmp_path, aiohttp_server, rsa_key):
    google = FakeGoogle(rsa_key, expires_in=60.3)  # kept until a minute before: 0.3 s
    google.service.script.default = (200, {}, b"{}")
    async with google.service.running(aiohttp_server):
        provider = await provider_for(tmp_path, google, rsa_key)
        try:
            await provider.send([notification(TOKEN)])
            await asyncio.sleep(0.5)
            (result,) = await provider.send([notification(TOKEN)])
        finally:
            await provider.close()
    assert result.outcome is Outcome.DELIVERED
    assert google.issued == ["access-1", "access-2"]


async def test_a_refused_token_is_refreshed_once(tmp_path, aiohttp_server, rsa_key):
    google = FakeGoogle(rsa_key)
    google.service.script.default = (200, {}, b"{}")
    async with google.service.running(aiohttp_server):
        provider = await provider_for(tmp_path, google, rsa_key)
        try:
            await provider.send([notification(TOKEN)])
            google.revoked.add("access-1")
            (result,) = await provider.send([notification(TOKEN)])
        finally:
            await provider.close()
    assert result.outcome is Outcome.DELIVERED
    assert google.issued == ["access-1", "access-2"]
    assert len(google.messages) == 2


def fcm_error(code: int, status: str, error_code: str | None = None) -> bytes:
    details = [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
    ]
    error = {"code": code, "status": status, "details": details if error_code else []}
    return orjson.dumps({"error": error})


@pytest.mark.parametrize(
    ("answer", "outcome", "delay", "reason"),
    [
        (
            (404, {}, fcm_error(404, "NOT_FOUND", "UNREGISTERED")),
            Outcome.GONE,
            None,
            "UNREGISTERED",
        ),
        ((404, {}, b""), Outcome.GONE, None, "http_404"),
        (
            (400, {}, fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")),
            Outcome.FAILED,
            None,
            "INVALID_ARGUMENT",
        ),
        (
            (429, {"Retry-After": "20"}, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")),
            Outcome.RETRY,
            20.0,
            "QUOTA_EXCEEDED",
        ),
        (
            (503, {}, fcm_error(503, "UNAVAILABLE", "UNAVAILABLE")),
            Outcome.RETRY,
            None,
            "UNAVAILABLE",
        ),
        ((500, {}, b"oops"), Outcome.RETRY, None, "http_500"),
    ],
)
async def test_fcm_answers_map_to_outcomes(
    tmp_path, aiohttp_server, rsa_key, answer, outcome, delay, reason
):
    google = FakeGoogle(rsa_key)
    google.service.script.default = answer
    async with google.service.running(aiohttp_server):
        provider = await provider_for(tmp_path, google, rsa_key)
        try:
            (result,) = await provider.send([notification(TOKEN)])
        finally:
            await provider.close()
    assert (result.outcome, result.retry_after_s, result.reason) == (outcome, delay, reason)


async def test_fcm_hanging_is_retried(tmp_path, aiohttp_server, rsa_key):
    google = FakeGoogle(rsa_key)
    google.service.script.default = 5.0
    async with google.service.running(aiohttp_server):
        provider = await provider_for(tmp_path, google, rsa_key, timeout_s=0.3)
        try:
            start = time.monotonic()
            (result,) = await provider.send([notification(TOKEN)])
        finally:
            await provider.close()
    assert (result.outcome, result.reason) == (Outcome.RETRY, "timeout")
    assert time.monotonic() - start < 2


async def test_a_token_endpoint_that_fails_retries_the_whole_batch(
    tmp_path, aiohttp_server, rsa_key
):
    google = FakeGoogle(rsa_key)
    service = FakeService(
        lambda r: (503, {"Retry-After": "5"}, b"") if r.path == "/token" else None
    )
    google.service = service
    async with service.running(aiohttp_server):
        provider = await provider_for(tmp_path, google, rsa_key)
        try:
            results = await provider.send([notification(TOKEN), notification(TOKEN)])
        finally:
            await provider.close()
    assert [(r.outcome, r.retry_after_s) for r in results] == [(Outcome.RETRY, 5.0)] * 2
    assert [r.path for r in service.requests] == ["/token"]


def test_a_target_needs_a_token(tmp_path, rsa_key):
    account = write_account(tmp_path / "sa.json", rsa_key, "https://oauth2.example/token")
    provider = fcm.create({"service_account_file": str(account)}, context(tmp_path, "fcm"))
    with pytest.raises(InvalidTarget):
        provider.check_target(PushTarget("u", "d", "fcm"))


@pytest.mark.parametrize(
    ("table", "names"),
    [
        ({}, "[push.fcm] service_account_file"),
        ({"service_account_file": "missing.json"}, "[push.fcm] service_account_file"),
        ({"service_account_file": "{bad}"}, "[push.fcm] service_account_file"),
        ({"service_account_file": "{sa}", "base_url": "fcm.example"}, "[push.fcm] base_url"),
        ({"service_account_file": "{sa}", "ttl_s": 1.5}, "[push.fcm] ttl_s"),
        ({"service_account_file": "{sa}", "project": "x"}, "[push.fcm] project"),
    ],
)
def test_configuration_errors_name_the_key(tmp_path, rsa_key, table, names):
    sa = write_account(tmp_path / "sa.json", rsa_key, "https://oauth2.example/token")
    (tmp_path / "bad.json").write_text("{not json")
    paths = {"{sa}": str(sa), "{bad}": str(tmp_path / "bad.json")}
    table = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in table.items()}
    with pytest.raises(ConfigError) as error:
        fcm.create(table, context(tmp_path, "fcm"))
    assert names in str(error.value)


def test_a_service_account_without_a_project_needs_project_id(tmp_path, rsa_key):
    sa = write_account(tmp_path / "sa.json", rsa_key, "https://oauth2.example/token")
    raw = json.loads(sa.read_text())
    del raw["project_id"]
    sa.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"\[push.fcm\] project_id"):
        fcm.create({"service_account_file": str(sa)}, context(tmp_path, "fcm"))
    fcm.create({"service_account_file": str(sa), "project_id": "p"}, context(tmp_path, "fcm"))


def test_payload_values_become_strings():
    assert fcm.data_values({**PAYLOAD, "content": "hi", "flag": True}) == {
        **{k: str(v) for k, v in PAYLOAD.items() if v is not None},
        "content": "hi",
        "flag": "true",
    }
