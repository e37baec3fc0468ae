"""The apns provider against a local HTTP/2 server (h2c) that checks what APNs
does: the provider token (ES256, verified with the key's public half), the
headers, the path, and answers with APNs' own error reasons."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import orjson
import pytest

from chatd.core.ports.push import InvalidTarget, Outcome, PushTarget
from chatd.plugins import ConfigError
from chatd.push.providers import apns
from tests.push.provider_fakes import PAYLOAD, H2Service, context, notification, write_ec_key

DEVICE = "a1b2c3" * 10 + "d4e5"
TARGET = PushTarget("u1", "d1", "apns", token=DEVICE)


@pytest.fixture
def p8(tmp_path):
    return write_ec_key(tmp_path / "AuthKey_ABC123DEFG.p8", pkcs8=True)


def table(tmp_path, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "key_file": str(tmp_path / "AuthKey_ABC123DEFG.p8"),
        "key_id": "ABC123DEFG",
        "team_id": "TEAM123456",
        "topic": "org.example.chat",
        "base_url": url,
        **extra,
    }


async def send(tmp_path, service: H2Service, *notifications, **kw: Any):
    settings = kw.pop("settings", {})
    provider = apns.create(
        table(tmp_path, service.url, **settings), context(tmp_path, "apns", **kw)
    )
    await provider.open()
    try:
        return await provider.send(list(notifications))
    finally:
        await provider.close()


async def test_apns_gets_its_headers_a_valid_provider_token_and_the_payload(tmp_path, p8):
    async with H2Service().running() as service:
        results = await send(tmp_path, service, notification(TARGET), notification(TARGET))
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2
    assert service.connections == 1  # both requests multiplexed on one HTTP/2 connection
    request = service.requests[0]
    assert request.headers[":method"] == "POST"
    assert request.path == f"/3/device/{DEVICE}"
    assert request.headers["apns-topic"] == "org.example.chat"
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert request.headers["apns-collapse-id"] == "chat-1"
    assert request.headers["apns-id"] == "0b7c6f2e-8f4a-4c55-9a51-3d1f2f0e7a10"
    assert 0 < int(request.headers["apns-expiration"]) - time.time() <= 86400
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "bearer"
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "ABC123DEFG", "typ": "JWT"}
    claims = jwt.decode(token, p8.public_key(), algorithms=["ES256"])
    assert claims["iss"] == "TEAM123456"
    assert abs(claims["iat"] - time.time()) < 60
    body = orjson.loads(request.body)
    aps = body.pop("aps")
    assert aps["alert"] == {"title": "Bob", "body": "New message"}
    assert aps["thread-id"] == "chat-1"
    assert body == PAYLOAD


async def test_the_alert_shows_content_and_the_group_title_only_when_given(tmp_path, p8):
    payload = {**PAYLOAD, "chat_title": "Hikers", "content": "Summit at noon"}
    async with H2Service().running() as service:
        await send(tmp_path, service, notification(TARGET, payload=payload))
    body = orjson.loads(service.requests[0].body)
    assert body["aps"]["alert"] == {"title": "Hikers", "body": "Summit at noon"}


async def test_background_pushes_show_nothing(tmp_path, p8):
    async with H2Service().running() as service:
        await send(tmp_path, service, notification(TARGET), settings={"push_type": "background"})
    request = service.requests[0]
    assert request.headers["apns-push-type"] == "background"
    assert request.headers["apns-priority"] == "5"
    aps = orjson.loads(request.body)["aps"]
    assert aps["content-available"] == 1
    assert "alert" not in aps


def test_apns_id_is_stable_for_one_delivery():
    assert apns.apns_id("not-a-uuid") == apns.apns_id("not-a-uuid")
    assert uuid.UUID(apns.apns_id("not-a-uuid"))
    assert apns.apns_id("not-a-uuid") != apns.apns_id("another")


def reason(text: str) -> bytes:
    return orjson.dumps({"reason": text})


@pytest.mark.parametrize(
    ("answer", "outcome", "delay", "why"),
    [
        ((410, {}, reason("Unregistered")), Outcome.GONE, None, "Unregistered"),
        ((400, {}, reason("BadDeviceToken")), Outcome.GONE, None, "BadDeviceToken"),
        (
            (400, {}, reason("DeviceTokenNotForTopic")),
            Outcome.FAILED,
            None,
            "DeviceTokenNotForTopic",
        ),
        ((413, {}, reason("PayloadTooLarge")), Outcome.FAILED, None, "PayloadTooLarge"),
        (
            (429, {"Retry-After": "15"}, reason("TooManyRequests")),
            Outcome.RETRY,
            15.0,
            "TooManyRequests",
        ),
        ((500, {}, reason("InternalServerError")), Outcome.RETRY, None, "InternalServerError"),
        ((503, {}, b""), Outcome.RETRY, None, "http_503"),
    ],
)
async def test_apns_answers_map_to_outcomes(tmp_path, p8, answer, outcome, delay, why):
    service = H2Service()
    service.script.default = answer
    async with service.running():
        (result,) = await send(tmp_path, service, notification(TARGET))
    assert (result.outcome, result.retry_after_s, result.reason) == (outcome, delay, why)


async def test_an_expired_provider_token_is_renewed_once(tmp_path, p8):
    service = H2Service()
    service.script.answers = [(403, {}, reason("ExpiredProviderToken"))]
    async with service.running():
        (result,) = await send(tmp_path, service, notification(TARGET))
    assert result.outcome is Outcome.DELIVERED
    assert len(service.requests) == 2


async def test_apns_hanging_is_retried(tmp_path, p8):
    service = H2Service()
    service.script.default = 5.0
    async with service.running():
        start = time.monotonic()
        (result,) = await send(tmp_path, service, notification(TARGET), timeout_s=0.3)
    assert (result.outcome, result.reason) == (Outcome.RETRY, "timeout")
    assert time.monotonic() - start < 2


async def test_apns_unreachable_is_retried(tmp_path, p8):
    service = H2Service()
    async with service.running():
        url = service.url
    provider = apns.create(table(tmp_path, url), context(tmp_path, "apns"))
    await provider.open()
    try:
        (result,) = await provider.send([notification(TARGET)])
    finally:
        await provider.close()
    assert (result.outcome, result.reason) == (Outcome.RETRY, "network")


def test_a_target_needs_a_hex_device_token(tmp_path, p8):
    provider = apns.create(table(tmp_path, ""), context(tmp_path, "apns"))
    provider.check_target(TARGET)
    for token in (None, "", "not hex!"):
        with pytest.raises(InvalidTarget):
            provider.check_target(PushTarget("u", "d", "apns", token=token))


def test_sandbox_picks_apples_development_host(tmp_path, p8):
    settings = table(tmp_path, "", sandbox=True)
    del settings["base_url"]
    provider = apns.create(settings, context(tmp_path, "apns"))
    assert provider._base_url == apns.SANDBOX_URL


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"key_file": ""}, "[push.apns] key_file"),
        ({"key_file": "missing.p8"}, "[push.apns] key_file"),
        ({"key_id": ""}, "[push.apns] key_id"),
        ({"team_id": ""}, "[push.apns] team_id"),
        ({"topic": ""}, "[push.apns] topic"),
        ({"sandbox": "yes"}, "[push.apns] sandbox"),
        ({"push_type": "voip"}, "[push.apns] push_type"),
        ({"bundle_id": "x"}, "[push.apns] bundle_id"),
    ],
)
def test_configuration_errors_name_the_key(tmp_path, p8, change, names):
    with pytest.raises(ConfigError) as error:
        apns.create(table(tmp_path, "", **change), context(tmp_path, "apns"))
    assert names in str(error.value)


def test_a_key_file_that_is_not_an_apns_key_is_refused(tmp_path):
    (tmp_path / "AuthKey_ABC123DEFG.p8").write_text("-----BEGIN PRIVATE KEY-----\nxx\n")
    with pytest.raises(ConfigError, match=r"\[push.apns\] key_file"):
        apns.create(table(tmp_path, ""), context(tmp_path, "apns"))
