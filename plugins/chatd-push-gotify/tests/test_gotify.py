"""The Gotify provider as chatd uses it: found by name, its table checked, and its
requests checked by a local server that answers as Gotify does."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from chatd.core.ports.push import InvalidTarget, Notification, Outcome, PushTarget
from chatd.plugins import PUSH, ConfigError, create, installed
from chatd.push.context import PushContext

APP_TOKEN = "AbCdEf.123456"
TARGET = PushTarget("u1", "d1", "gotify", token=APP_TOKEN)
PAYLOAD = {
    "type": "new_message",
    "chat_id": "chat-1",
    "message_id": "msg-1",
    "seq": 7,
    "sender_id": "user-2",
    "sender_name": "Bob",
    "chat_title": None,
    "unread_count": 3,
    "timestamp": "2026-01-02T03:04:05Z",
}


def context(tmp_path: Path, timeout_s: float = 2.0) -> PushContext:
    return PushContext("push.gotify", tmp_path, "node-1", timeout_s=timeout_s)


def notification(**changes: Any) -> Notification:
    return Notification(
        **{"delivery_id": "d-1", "target": TARGET, "payload": PAYLOAD, "collapse_key": "chat-1"}
        | changes
    )


class FakeGotify:
    """``POST /message``: 401 for an unknown application token, else the message back."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answer: tuple[int, dict[str, str]] | None = None
        self.delay = 0.0

    async def message(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        if self.answer:
            return web.Response(status=self.answer[0], headers=self.answer[1])
        if request.headers.get("X-Gotify-Key") != APP_TOKEN:
            return web.json_response({"error": "Unauthorized", "errorCode": 401}, status=401)
        body = await request.json()
        self.received.append(body)
        return web.json_response({"id": len(self.received), "appid": 1, **body})

    async def start(self, aiohttp_server: Any) -> str:
        app = web.Application()
        app.router.add_post("/message", self.message)
        server = await aiohttp_server(app)
        return str(server.make_url("")).rstrip("/")


async def send(url: str, tmp_path: Path, *batch: Notification, **kw: Any):
    table = {"url": url, **kw.pop("table", {})}
    provider = create(PUSH, "gotify", table, context(tmp_path, **kw))
    await provider.open()
    try:
        return await provider.send(list(batch))
    finally:
        await provider.close()


def test_chatd_finds_the_plugin_by_name():
    assert "gotify" in installed(PUSH)


async def test_gotify_gets_title_message_priority_and_the_payload(tmp_path, aiohttp_server):
    gotify = FakeGotify()
    url = await gotify.start(aiohttp_server)
    group = {**PAYLOAD, "chat_title": "Hikers", "content": "Summit at noon"}
    results = await send(
        url, tmp_path, notification(), notification(payload=group), table={"priority": 8}
    )
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2
    assert gotify.received == [
        {
            "title": "Bob",
            "message": "New message",
            "priority": 8,
            "extras": {"chatd::notification": PAYLOAD},
        },
        {
            "title": "Hikers",
            "message": "Summit at noon",
            "priority": 8,
            "extras": {"chatd::notification": group},
        },
    ]


async def test_an_unknown_application_token_fails(tmp_path, aiohttp_server):
    url = await FakeGotify().start(aiohttp_server)
    stranger = PushTarget("u1", "d1", "gotify", token="nope")
    (result,) = await send(url, tmp_path, notification(target=stranger))
    assert (result.outcome, result.reason) == (Outcome.FAILED, "http_401")


@pytest.mark.parametrize(
    ("status", "headers", "outcome", "delay"),
    [
        (503, {}, Outcome.RETRY, None),
        (429, {"Retry-After": "9"}, Outcome.RETRY, 9.0),
        (404, {}, Outcome.GONE, None),
    ],
)
async def test_gotify_answers_map_to_outcomes(
    tmp_path, aiohttp_server, status, headers, outcome, delay
):
    gotify = FakeGotify()
    gotify.answer = (status, headers)
    url = await gotify.start(aiohttp_server)
    (result,) = await send(url, tmp_path, notification())
    assert (result.outcome, result.retry_after_s) == (outcome, delay)


async def test_a_gotify_that_hangs_is_retried(tmp_path, aiohttp_server):
    gotify = FakeGotify()
    gotify.delay = 5.0
    url = await gotify.start(aiohttp_server)
    start = time.monotonic()
    (result,) = await send(url, tmp_path, notification(), timeout_s=0.3)
    assert (result.outcome, result.reason) == (Outcome.RETRY, "timeout")
    assert time.monotonic() - start < 2


def test_a_target_needs_an_application_token(tmp_path):
    provider = create(PUSH, "gotify", {"url": "https://gotify.example"}, context(tmp_path))
    provider.check_target(TARGET)
    with pytest.raises(InvalidTarget):
        provider.check_target(PushTarget("u1", "d1", "gotify"))


@pytest.mark.parametrize(
    ("table", "names"),
    [
        ({}, "[push.gotify] url"),
        ({"url": "gotify.example"}, "[push.gotify] url"),
        ({"url": "https://gotify.example", "priority": 11}, "[push.gotify] priority"),
        ({"url": "https://gotify.example", "priority": "high"}, "[push.gotify] priority"),
        ({"url": "https://gotify.example", "token": "x"}, "[push.gotify] token"),
    ],
)
def test_configuration_errors_name_the_key(tmp_path, table, names):
    with pytest.raises(ConfigError) as error:
        create(PUSH, "gotify", table, context(tmp_path))
    assert names in str(error.value)
