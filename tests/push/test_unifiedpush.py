"""The unifiedpush provider against a local distributor (as ntfy would answer)."""

from __future__ import annotations

import time
from typing import Any

import http_ece
import orjson
import pytest

from chatd.core.ports.push import InvalidTarget, Outcome, PushTarget
from chatd.plugins import ConfigError
from chatd.push.providers import unifiedpush
from tests.push.provider_fakes import PAYLOAD, FakeService, Subscription, context, notification


def target(endpoint: str, sub: Subscription | None = None) -> PushTarget:
    keys = {"p256dh": sub.p256dh, "auth": sub.auth} if sub else {}
    return PushTarget("u1", "d1", "unifiedpush", endpoint=endpoint, **keys)


async def send(tmp_path, service: FakeService, *targets: PushTarget, **kw: Any):
    settings = kw.pop("settings", {})
    provider = unifiedpush.create(settings, context(tmp_path, "unifiedpush", **kw))
    await provider.open()
    try:
        return await provider.send([notification(t) for t in targets])
    finally:
        await provider.close()


async def test_without_keys_the_distributor_gets_the_json_payload(tmp_path, aiohttp_server):
    async with FakeService().running(aiohttp_server) as service:
        results = await send(tmp_path, service, target(f"{service.url}/up/t0k3n"))
    assert [r.outcome for r in results] == [Outcome.DELIVERED]
    (request,) = service.requests
    assert request.path == "/up/t0k3n"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["ttl"] == "86400"
    assert "content-encoding" not in request.headers
    assert orjson.loads(request.body) == PAYLOAD


async def test_with_keys_the_app_decrypts_the_payload(tmp_path, aiohttp_server):
    sub = Subscription()
    async with FakeService().running(aiohttp_server) as service:
        results = await send(
            tmp_path, service, target(f"{service.url}/up/t0k3n", sub), settings={"ttl_s": 600}
        )
    assert [r.outcome for r in results] == [Outcome.DELIVERED]
    (request,) = service.requests
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["ttl"] == "600"
    plain = http_ece.decrypt(
        request.body, private_key=sub.private_key, auth_secret=sub.auth_secret, version="aes128gcm"
    )
    assert orjson.loads(plain) == PAYLOAD


async def test_content_too_long_for_a_push_is_left_out(tmp_path, aiohttp_server):
    async with FakeService().running(aiohttp_server) as service:
        provider = unifiedpush.create({}, context(tmp_path, "unifiedpush"))
        await provider.open()
        try:
            short = {**PAYLOAD, "content": "hi"}
            long = {**PAYLOAD, "content": "x" * 5000}
            await provider.send(
                [
                    notification(target(f"{service.url}/short"), payload=short),
                    notification(target(f"{service.url}/long"), payload=long),
                ]
            )
        finally:
            await provider.close()
    bodies = {r.path: orjson.loads(r.body) for r in service.requests}
    assert bodies["/short"] == {**PAYLOAD, "content": "hi"}
    assert bodies["/long"] == PAYLOAD
    assert all(len(r.body) <= 4096 for r in service.requests)


@pytest.mark.parametrize(
    ("status", "headers", "outcome", "delay"),
    [
        (404, {}, Outcome.GONE, None),
        (410, {}, Outcome.GONE, None),
        (429, {"Retry-After": "12"}, Outcome.RETRY, 12.0),
        (500, {}, Outcome.RETRY, None),
        (413, {}, Outcome.FAILED, None),
    ],
)
async def test_distributor_answers_map_to_outcomes(
    tmp_path, aiohttp_server, status, headers, outcome, delay
):
    service = FakeService()
    service.script.default = (status, headers, b"")
    async with service.running(aiohttp_server):
        (result,) = await send(tmp_path, service, target(service.url, Subscription()))
    assert (result.outcome, result.retry_after_s) == (outcome, delay)


async def test_a_distributor_that_hangs_is_retried(tmp_path, aiohttp_server):
    service = FakeService()
    service.script.default = 5.0
    async with service.running(aiohttp_server):
        start = time.monotonic()
        (result,) = await send(tmp_path, service, target(service.url), timeout_s=0.3)
    assert (result.outcome, result.reason) == (Outcome.RETRY, "timeout")
    assert time.monotonic() - start < 2


async def test_a_loopback_endpoint_is_refused_unless_private_endpoints_are_allowed(
    tmp_path, aiohttp_server
):
    async with FakeService().running(aiohttp_server) as service:
        (result,) = await send(tmp_path, service, target(service.url), allow_private=False)
    assert (result.outcome, result.reason) == (Outcome.FAILED, "address_refused")
    assert service.requests == []


def test_keys_are_optional_but_must_come_in_pairs(tmp_path):
    provider = unifiedpush.create({}, context(tmp_path, "unifiedpush"))
    sub = Subscription()
    provider.check_target(target("https://ntfy.example/up1"))
    provider.check_target(target("https://ntfy.example/up1", sub))
    for bad in (
        PushTarget("u", "d", "unifiedpush"),
        PushTarget("u", "d", "unifiedpush", endpoint="https://ntfy.example/up1", auth=sub.auth),
    ):
        with pytest.raises(InvalidTarget):
            provider.check_target(bad)


@pytest.mark.parametrize(
    ("table", "names"),
    [({"ttl_s": -1}, "[push.unifiedpush] ttl_s"), ({"url": "x"}, "[push.unifiedpush] url")],
)
def test_configuration_errors_name_the_key(tmp_path, table, names):
    with pytest.raises(ConfigError) as error:
        unifiedpush.create(table, context(tmp_path, "unifiedpush"))
    assert names in str(error.value)
