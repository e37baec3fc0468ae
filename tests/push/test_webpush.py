"""The webpush provider against a local push service that checks what a browser
vendor's would: the VAPID JWT and the RFC 8291 body, decrypted with the
subscription's own keys."""

from __future__ import annotations

import re
import time
from typing import Any

import http_ece
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatd.core.ports.push import InvalidTarget, Outcome, PushTarget
from chatd.plugins import ConfigError
from chatd.push.providers import webpush
from tests.push.provider_fakes import (
    PAYLOAD,
    FakeService,
    Subscription,
    b64url,
    context,
    notification,
    write_ec_key,
)


@pytest.fixture
def vapid_key(tmp_path):
    return write_ec_key(tmp_path / "vapid.pem")


def settings(tmp_path, **extra: Any) -> dict[str, Any]:
    return {
        "vapid_private_key": str(tmp_path / "vapid.pem"),
        "subject": "mailto:ops@example.org",
        **extra,
    }


def target(endpoint: str, sub: Subscription) -> PushTarget:
    return PushTarget("u1", "d1", "webpush", endpoint=endpoint, p256dh=sub.p256dh, auth=sub.auth)


async def started(tmp_path, **kw: Any) -> webpush.WebPushProvider:
    provider = webpush.create(settings(tmp_path), context(tmp_path, "webpush", **kw))
    await provider.open()
    return provider


def verify_vapid(header: str, origin: str, public_key: ec.EllipticCurvePublicKey) -> dict:
    """What a push service does with ``Authorization: vapid t=<jwt>,k=<key>``."""
    scheme, _, params = header.partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    raw_k = public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert fields["k"] == b64url(raw_k)
    return jwt.decode(fields["t"], public_key, algorithms=["ES256"], audience=origin)


async def test_the_push_service_verifies_vapid_and_the_browser_decrypts_the_payload(
    tmp_path, aiohttp_server, vapid_key
):
    sub = Subscription()
    async with FakeService().running(aiohttp_server) as service:
        provider = await started(tmp_path)
        try:
            results = await provider.send([notification(target(f"{service.url}/push/abc", sub))])
        finally:
            await provider.close()
    assert [r.outcome for r in results] == [Outcome.DELIVERED]
    (request,) = service.requests
    assert request.path == "/push/abc"
    claims = verify_vapid(request.headers["authorization"], service.url, vapid_key.public_key())
    assert claims["sub"] == "mailto:ops@example.org"
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["ttl"] == "86400"
    assert request.headers["urgency"] == "high"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", request.headers["topic"])
    plain = http_ece.decrypt(
        request.body, private_key=sub.private_key, auth_secret=sub.auth_secret, version="aes128gcm"
    )
    assert orjson.loads(plain) == PAYLOAD


async def test_one_topic_per_chat_so_the_service_replaces_an_undelivered_one(
    tmp_path, aiohttp_server, vapid_key
):
    sub = Subscription()
    async with FakeService().running(aiohttp_server) as service:
        provider = await started(tmp_path)
        try:
            endpoint = f"{service.url}/push/abc"
            await provider.send(
                [
                    notification(target(endpoint, sub), collapse_key="chat-1"),
                    notification(target(endpoint, sub), collapse_key="chat-1"),
                    notification(target(endpoint, sub), collapse_key="chat-2"),
                ]
            )
        finally:
            await provider.close()
    topics = [r.headers["topic"] for r in service.requests]
    assert len(set(topics)) == 2
    assert topics.count(webpush.topic_for("chat-1")) == 2


@pytest.mark.parametrize(
    ("status", "headers", "outcome", "delay"),
    [
        (404, {}, Outcome.GONE, None),
        (410, {}, Outcome.GONE, None),
        (429, {"Retry-After": "30"}, Outcome.RETRY, 30.0),
        (503, {}, Outcome.RETRY, None),
        (400, {}, Outcome.FAILED, None),
    ],
)
async def test_push_service_answers_map_to_outcomes(
    tmp_path, aiohttp_server, vapid_key, status, headers, outcome, delay
):
    service = FakeService()
    service.script.default = (status, headers, b"")
    async with service.running(aiohttp_server):
        provider = await started(tmp_path)
        try:
            (result,) = await provider.send([notification(target(service.url, Subscription()))])
        finally:
            await provider.close()
    assert (result.outcome, result.retry_after_s) == (outcome, delay)
    assert result.reason == f"http_{status}"


async def test_results_come_in_batch_order(tmp_path, aiohttp_server, vapid_key):
    def route(request):
        return (410, {}, b"") if request.path == "/gone" else None

    async with FakeService(route).running(aiohttp_server) as service:
        provider = await started(tmp_path)
        try:
            sub = Subscription()
            results = await provider.send(
                [
                    notification(target(f"{service.url}{path}", sub))
                    for path in ("/a", "/gone", "/b")
                ]
            )
        finally:
            await provider.close()
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.GONE, Outcome.DELIVERED]


async def test_a_push_service_that_hangs_is_retried(tmp_path, aiohttp_server, vapid_key):
    service = FakeService()
    service.script.default = 5.0
    async with service.running(aiohttp_server):
        provider = await started(tmp_path, timeout_s=0.3)
        try:
            start = time.monotonic()
            (result,) = await provider.send([notification(target(service.url, Subscription()))])
        finally:
            await provider.close()
    assert (result.outcome, result.reason) == (Outcome.RETRY, "timeout")
    assert time.monotonic() - start < 2


async def test_a_loopback_endpoint_is_refused_unless_private_endpoints_are_allowed(
    tmp_path, aiohttp_server, vapid_key
):
    async with FakeService().running(aiohttp_server) as service:
        provider = await started(tmp_path, allow_private=False)
        try:
            (result,) = await provider.send([notification(target(service.url, Subscription()))])
        finally:
            await provider.close()
    assert (result.outcome, result.reason) == (Outcome.FAILED, "address_refused")
    assert service.requests == []


def test_a_subscription_needs_an_endpoint_and_both_keys(tmp_path, vapid_key):
    provider = webpush.create(settings(tmp_path), context(tmp_path, "webpush"))
    sub = Subscription()
    provider.check_target(target("https://push.example/x", sub))
    for bad in (
        PushTarget("u", "d", "webpush", endpoint=None, p256dh=sub.p256dh, auth=sub.auth),
        PushTarget("u", "d", "webpush", endpoint="https://push.example/x", p256dh=sub.p256dh),
        PushTarget(
            "u", "d", "webpush", endpoint="https://p.example/x", p256dh="AAAA", auth=sub.auth
        ),
        PushTarget(
            "u", "d", "webpush", endpoint="https://p.example/x", p256dh=sub.p256dh, auth="AAAA"
        ),
    ):
        with pytest.raises(InvalidTarget):
            provider.check_target(bad)


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"vapid_private_key": ""}, "[push.webpush] vapid_private_key"),
        ({"vapid_private_key": "missing.pem"}, "[push.webpush] vapid_private_key"),
        ({"subject": "ops@example.org"}, "[push.webpush] subject"),
        ({"subject": "mailto:nobody"}, "[push.webpush] subject"),
        ({"urgency": "now"}, "[push.webpush] urgency"),
        ({"ttl_s": "1d"}, "[push.webpush] ttl_s"),
        ({"vapid_key": "x"}, "[push.webpush] vapid_key"),
    ],
)
def test_configuration_errors_name_the_key(tmp_path, vapid_key, change, names):
    with pytest.raises(ConfigError) as error:
        webpush.create(settings(tmp_path, **change), context(tmp_path, "webpush"))
    assert names in str(error.value)


def test_a_vapid_key_that_is_not_p256_is_refused(tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "vapid.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match=r"\[push.webpush\] vapid_private_key.*P-256"):
        webpush.create(settings(tmp_path), context(tmp_path, "webpush"))
