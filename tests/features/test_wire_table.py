"""Wire behaviour docs/protocol.md promises, one row per promise.

Each row is a small scenario against a real server (with its own configuration
when the row needs one); the row's name says which promise it checks.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest

from chatd.client import ApiError, ChatdClient
from chatd.gateway.context import SERVICES


@dataclass
class Env:
    user: Callable[..., Awaitable[ChatdClient]]
    base_url: str
    server: Any
    monkeypatch: pytest.MonkeyPatch


@dataclass
class Case:
    name: str
    run: Callable[[Env], Awaitable[None]]
    config: dict[str, Any] = field(default_factory=dict)


async def call(client: ChatdClient, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    """A REST call's status and decoded body, whatever the status."""
    headers = {"Authorization": f"Bearer {client.token}"}
    async with client._http().request(method, client.api_url + path, headers=headers, **kw) as r:
        raw = await r.read()
        return r.status, orjson.loads(raw) if raw else None


def ws_url(env: Env, path: str = "/ws") -> str:
    return "ws" + env.base_url.removeprefix("http") + path


async def frames_until(ws: aiohttp.ClientWebSocketResponse, frame_id: str) -> list[dict]:
    """Every frame up to and including the answer to ``frame_id`` (a sentinel ping)."""
    await ws.send_str(orjson.dumps({"type": "ping", "id": frame_id}).decode())
    got: list[dict] = []
    while not got or got[-1].get("id") != frame_id:
        got.append(await ws.receive_json(timeout=10))
    return got


async def hello_of(env: Env, path: str = "/ws", **kw: Any) -> dict:
    """The hello data of a raw upgrade (raises WSServerHandshakeError when refused)."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(env, path), **kw) as ws,
    ):
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello"
        return hello["data"]


async def refused_status(env: Env, path: str = "/ws", **kw: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await hello_of(env, path, **kw)
    return err.value.status


# -- WebSocket rows -------------------------------------------------------------------


async def binary_frame_gets_bad_request(env: Env) -> None:
    alice = await env.user()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(env), headers={"Authorization": f"Bearer {alice.token}"}) as ws,
    ):
        await ws.receive_json()  # hello
        await ws.send_bytes(b'{"type": "ping", "id": "bin"}')
        error, answer = await frames_until(ws, "after")
        assert (error["type"], error["id"], error["data"]["code"]) == ("error", None, "bad_request")
        assert answer["type"] == "ack" and "server_time" in answer["data"]  # still open


async def frame_without_id_gets_no_ack_and_errors_carry_null(env: Env) -> None:
    alice = await env.user()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(env), headers={"Authorization": f"Bearer {alice.token}"}) as ws,
    ):
        await ws.receive_json()  # hello
        await ws.send_str('{"type": "ping"}')
        await ws.send_str('{"type": "ping", "id": null}')
        await ws.send_str('{"type": "teleport", "data": null}')
        await ws.send_str('{"type": "teleport", "id": null}')
        got = await frames_until(ws, "sentinel")
        assert [(f["type"], f["id"]) for f in got] == [
            ("error", None),
            ("error", None),
            ("ack", "sentinel"),
        ]
        assert {f["data"]["code"] for f in got[:2]} == {"bad_request"}


async def api_v1_ws_is_the_same_endpoint(env: Env) -> None:
    alice = await env.user()
    headers = {"Authorization": f"Bearer {alice.token}"}
    assert (await hello_of(env, "/api/v1/ws", headers=headers))["device_id"] == alice.device_id


async def header_token_wins_over_query_token(env: Env) -> None:
    alice, bob = await env.user(), await env.user()
    both = {"headers": {"Authorization": f"Bearer {alice.token}"}, "params": {"token": bob.token}}
    assert (await hello_of(env, **both))["user_id"] == alice.user_id
    forged = {"headers": {"Authorization": "Bearer forged"}, "params": {"token": bob.token}}
    assert await refused_status(env, **forged) == 401
    assert (await hello_of(env, params={"token": bob.token}))["user_id"] == bob.user_id


async def same_host_origin_is_always_allowed(env: Env) -> None:
    alice = await env.user()
    headers = {"Authorization": f"Bearer {alice.token}"}
    own = env.base_url  # http://127.0.0.1:<port>, not in allowed_origins
    assert (await hello_of(env, headers=headers, origin=own))["user_id"] == alice.user_id
    assert await refused_status(env, headers=headers, origin="https://evil.test") == 403


async def star_allows_every_origin(env: Env) -> None:
    alice = await env.user()
    headers = {"Authorization": f"Bearer {alice.token}"}
    for origin in ("https://evil.test", "null"):
        assert (await hello_of(env, headers=headers, origin=origin))["user_id"] == alice.user_id


# -- REST rows ------------------------------------------------------------------------


async def messaging_yourself_is_refused(env: Env) -> None:
    alice = await env.user()
    with pytest.raises(ApiError) as err:
        await alice.send_message(recipient_id=alice.user_id, content="note to self")
    assert (err.value.status, err.value.code) == (400, "bad_request")
    async with alice.connect() as ws:
        with pytest.raises(ApiError) as err:
            await ws.send_message(recipient_id=alice.user_id, content="note to self")
        assert err.value.code == "bad_request"
    assert await call(alice, "POST", "/chats/direct", json={"user_id": alice.user_id}) == (
        400,
        {"error": {"code": "bad_request", "message": "a direct chat needs another user"}},
    )
    assert await alice.chats() == []


async def bad_history_queries_are_400(env: Env) -> None:
    alice, bob = await env.user(), await env.user()
    ack = await alice.send_message(recipient_id=bob.user_id, content="one")
    other = await alice.send_message(recipient_id=(await env.user()).user_id, content="two")
    path = f"/chats/{ack['chat_id']}/messages"
    for query in (
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"after_seq": "-1"},
        {"after_seq": "one"},
        {"after_seq": "0", "limit": "101"},
        {"before": "not-a-message"},
        {"before": other["message_id"]},  # a message of another chat
    ):
        status, body = await call(alice, "GET", path, params=query)
        assert (status, body["error"]["code"]) == (400, "bad_request"), query
    status, body = await call(alice, "GET", path, params={"limit": "100", "after_seq": "0"})
    assert (status, [m["content"] for m in body["messages"]]) == (200, ["one"])


async def wrong_method_on_a_known_route_is_400(env: Env) -> None:
    alice = await env.user()
    for method, path in (("DELETE", "/chats"), ("PUT", "/messages"), ("POST", "/users/me")):
        status, body = await call(alice, method, path)
        assert (status, body["error"]["code"]) == (400, "bad_request"), (method, path)
    status, body = await call(alice, "GET", "/no/such/route")
    assert (status, body["error"]["code"]) == (404, "not_found")


async def health_is_503_when_storage_does_not_answer(env: Env) -> None:
    storage = env.server.app[SERVICES].storage

    async def no_answer() -> bool:  # what ping reports when the database is gone
        return False

    async with ChatdClient(env.base_url) as anonymous:
        env.monkeypatch.setattr(storage, "ping", no_answer)
        async with anonymous._http().get(anonymous.api_url + "/health") as r:
            body = await r.json()
            assert (r.status, body["status"]) == (503, "unavailable")
            assert {"node_id", "version", "uptime_s", "connections"} <= set(body)
        env.monkeypatch.undo()
        assert (await anonymous.health())["status"] == "ok"


async def get_one_chat_is_its_inbox_entry(env: Env) -> None:
    alice, bob, mallory = await env.user(), await env.user(), await env.user()
    ack = await alice.send_message(recipient_id=bob.user_id, content="hello")
    await bob.send_message(chat_id=ack["chat_id"], content="hi")
    (entry,) = await alice.chats()
    assert await alice.request("GET", f"/chats/{ack['chat_id']}") == entry
    assert (entry["last_seq"], entry["unread_count"], entry["is_member"]) == (2, 1, True)
    for who, chat_id in ((mallory, ack["chat_id"]), (alice, "no-such-chat")):
        status, body = await call(who, "GET", f"/chats/{chat_id}")
        assert (status, body["error"]["code"]) == (404, "not_found")


async def direct_chat_is_201_when_made_and_200_after(env: Env) -> None:
    alice, bob = await env.user(), await env.user()
    made_status, made = await call(alice, "POST", "/chats/direct", json={"user_id": bob.user_id})
    assert made_status == 201 and made["kind"] == "direct"
    assert {m["user_id"] for m in made["members"]} == {alice.user_id, bob.user_id}
    for who, peer in ((alice, bob), (bob, alice)):
        status, again = await call(who, "POST", "/chats/direct", json={"user_id": peer.user_id})
        assert (status, again["chat_id"]) == (200, made["chat_id"])
    assert [c["chat_id"] for c in await bob.chats()] == [made["chat_id"]]


def _key(size: int = 33) -> str:
    return base64.b64encode(os.urandom(size)).decode()


async def new_signed_prekey_replaces_the_old_and_keeps_one_time_prekeys(env: Env) -> None:
    alice, bob = await env.user(), await env.user()
    identity = _key()
    await bob.upload_keys(
        identity,
        {"key_id": 1, "public_key": _key(), "signature": _key(64)},
        [{"key_id": i, "public_key": _key()} for i in range(1, 4)],
    )
    rotated = {"key_id": 2, "public_key": _key(), "signature": _key(64)}
    assert await bob.request("PUT", "/keys", json={"signed_prekey": rotated}) == {
        "one_time_prekeys": 3
    }
    (bundle,) = await alice.get_keys(bob.user_id)
    assert (bundle["identity_key"], bundle["signed_prekey"]) == (identity, rotated)
    assert bundle["one_time_prekey"]["key_id"] in {1, 2, 3}
    assert await bob.key_count() == 2


CASES = [
    Case("binary frame: bad_request, socket stays open", binary_frame_gets_bad_request),
    Case(
        "frame without id: no ack; errors say id null",
        frame_without_id_gets_no_ack_and_errors_carry_null,
    ),
    Case("/api/v1/ws is /ws", api_v1_ws_is_the_same_endpoint),
    Case("Authorization header wins over ?token=", header_token_wins_over_query_token),
    Case(
        "same-host Origin always allowed",
        same_host_origin_is_always_allowed,
        {"server": {"allowed_origins": ["https://chat.example.org"]}},
    ),
    Case(
        '"*" allows every Origin', star_allows_every_origin, {"server": {"allowed_origins": ["*"]}}
    ),
    Case("messaging yourself: 400", messaging_yourself_is_refused),
    Case("bad history limit/after_seq/before: 400", bad_history_queries_are_400),
    Case("wrong method: 400 bad_request", wrong_method_on_a_known_route_is_400),
    Case("/health: 503 when storage does not answer", health_is_503_when_storage_does_not_answer),
    Case("GET /chats/{id}: one inbox entry", get_one_chat_is_its_inbox_entry),
    Case("POST /chats/direct: 201 made, 200 existing", direct_chat_is_201_when_made_and_200_after),
    Case(
        "prekey rotation keeps one-time prekeys",
        new_signed_prekey_replaces_the_old_and_keeps_one_time_prekeys,
    ),
]


@pytest.fixture
def config_overrides(case: Case) -> dict[str, Any]:
    return case.config


@pytest.mark.parametrize("case", CASES, ids=[c.run.__name__ for c in CASES])
async def test_wire_promise(case: Case, user, base_url, server, monkeypatch):
    await case.run(Env(user, base_url, server, monkeypatch))
