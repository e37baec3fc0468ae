"""Bad input gets its contract error, changes nothing, and the connection stays usable."""

from __future__ import annotations

import json

import aiohttp
import pytest

from chatd.client import ApiError
from tests.conftest import raw_ws

SMALL_LIMITS = {"limits": {"max_message_bytes": 1000, "max_frame_bytes": 4096}}


@pytest.fixture
def config_overrides():
    return SMALL_LIMITS


async def error_frame(ws) -> dict:
    return (await ws.next_event("error"))["data"]


async def test_non_json_and_non_object_frames_get_bad_request(user):
    alice, bob = await user(), await user()
    async with alice.connect() as ws:
        await ws.send_raw("this is not json")
        assert (await error_frame(ws))["code"] == "bad_request"
        await ws.send_raw("[1, 2, 3]")
        assert (await error_frame(ws))["code"] == "bad_request"
        ack = await ws.send_message(recipient_id=bob.user_id, content="still works")
        assert ack["seq"] == 1


async def test_unknown_frame_type_answers_with_the_request_id(user):
    alice = await user()
    async with alice.connect() as ws:
        await ws.send_raw('{"type": "teleport", "id": "x-1", "data": {}}')
        frame = await ws.next_event("error")
        assert frame["id"] == "x-1" and frame["data"]["code"] == "bad_request"
        with pytest.raises(ApiError) as err:
            await ws.request("teleport", {})
        assert err.value.code == "bad_request"
        assert "server_time" in await ws.ping()


@pytest.mark.parametrize(
    "data",
    [
        {"recipient_id": 42, "content": "x", "type": "text", "client_msg_id": "a"},
        {"content": "x", "type": "text", "client_msg_id": "a"},
        {"chat_id": "c", "recipient_id": "u", "content": "x", "type": "text", "client_msg_id": "a"},
        {"recipient_id": "u", "content": 5, "type": "text", "client_msg_id": "a"},
        {"recipient_id": "u", "content": "x", "type": "sticker", "client_msg_id": "a"},
        {"recipient_id": "u", "content": "x", "type": "text"},
        {"recipient_id": "u", "content": "x", "type": "text", "client_msg_id": ["a"]},
    ],
)
async def test_ill_typed_send_message_fields_get_bad_request(user, data):
    alice, bob = await user(), await user()
    if data.get("recipient_id") == "u":
        data = {**data, "recipient_id": bob.user_id}
    async with alice.connect() as ws:
        with pytest.raises(ApiError) as err:
            await ws.request("send_message", data)
        assert err.value.code == "bad_request"
    assert await alice.chats() == []
    with pytest.raises(ApiError) as err:
        await alice.request("POST", "/messages", json=data)
    assert (err.value.status, err.value.code) == (400, "bad_request")


async def test_ill_typed_receipt_and_typing_frames(user):
    alice = await user()
    async with alice.connect() as ws:
        for kind, data in [
            ("delivery_receipt", {"chat_id": 1, "message_id": "m"}),
            ("read_receipt", {"chat_id": "c"}),
            ("typing_indicator", {"chat_id": "c", "is_typing": "yes"}),
            ("send_message", "not an object"),
        ]:
            await ws.send_raw(json.dumps({"type": kind, "id": 7, "data": data}))
            frame = await ws.next_event("error")
            assert frame["id"] == 7 and frame["data"]["code"] == "bad_request", kind


async def test_oversized_message_is_413_and_not_stored(user):
    alice, bob = await user(), await user()
    big = "x" * 1001
    async with alice.connect() as ws:
        with pytest.raises(ApiError) as err:
            await ws.send_message(recipient_id=bob.user_id, content=big)
        assert err.value.code == "payload_too_large"
        assert (await ws.send_message(recipient_id=bob.user_id, content="ok"))["seq"] == 1
    with pytest.raises(ApiError) as err:
        await alice.send_message(recipient_id=bob.user_id, content=big)
    assert (err.value.status, err.value.code) == (413, "payload_too_large")
    assert len((await bob.messages((await bob.chats())[0]["chat_id"]))["messages"]) == 1


async def test_oversized_rest_body_is_413(user):
    alice = await user()
    with pytest.raises(ApiError) as err:
        await alice.request("PATCH", "/users/me", json={"display_name": "x" * 10_000})
    assert (err.value.status, err.value.code) == (413, "payload_too_large")


async def test_oversized_frame_closes_with_1009(user):
    alice = await user()
    async with raw_ws(alice) as ws:
        assert (await ws.receive_json())["type"] == "hello"
        await ws.send_str('{"type": "ping", "data": {"pad": "' + "x" * 5000 + '"}}')
        msg = await ws.receive()
        while msg.type == aiohttp.WSMsgType.TEXT:
            msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009


async def test_malformed_rest_bodies(user):
    alice = await user()
    http = alice._http()
    headers = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}
    for body in (b"{not json", b"[]", b'"text"', b""):
        async with http.post(alice.api_url + "/messages", data=body, headers=headers) as r:
            assert r.status == 400, body
            assert (await r.json())["error"]["code"] == "bad_request"


@pytest.mark.parametrize("name", ["ab", "x" * 33, "has space", "émile", "semi;colon", ""])
async def test_invalid_usernames_are_refused(base_url, name):
    from chatd.client import ChatdClient

    async with ChatdClient(base_url) as client:
        with pytest.raises(ApiError) as err:
            await client.register(name, "long enough password")
        assert (err.value.status, err.value.code) == (400, "bad_request")


async def test_missing_or_bad_auth_is_401_everywhere(base_url, user):
    from chatd.client import ChatdClient

    await user()
    async with ChatdClient(base_url) as anonymous:
        for method, path in [
            ("GET", "/chats"),
            ("GET", "/users/me"),
            ("POST", "/messages"),
            ("GET", "/devices"),
            ("GET", "/contacts"),
        ]:
            with pytest.raises(ApiError) as err:
                await anonymous.request(method, path, json={})
            assert (err.value.status, err.value.code) == (401, "unauthorized"), path
    async with ChatdClient(base_url, token="forged") as forged:
        with pytest.raises(ApiError) as err:
            await forged.chats()
        assert (err.value.status, err.value.code) == (401, "unauthorized")
        with pytest.raises(ApiError) as err:
            async with forged.connect(reconnect=False):
                pass
        assert (err.value.status, err.value.code) == (401, "unauthorized")


async def test_another_users_chat_is_not_found(user):
    alice, bob, mallory = await user(), await user(), await user()
    ack = await alice.send_message(recipient_id=bob.user_id, content="secret")
    with pytest.raises(ApiError) as err:
        await mallory.messages(ack["chat_id"])
    assert (err.value.status, err.value.code) == (404, "not_found")
    with pytest.raises(ApiError) as err:
        await mallory.send_message(chat_id=ack["chat_id"], content="let me in")
    assert err.value.code == "not_found"
    with pytest.raises(ApiError) as err:
        await mallory.request("GET", f"/chats/{ack['chat_id']}")
    assert err.value.code == "not_found"
    async with mallory.connect() as ws:
        with pytest.raises(ApiError) as err:
            await ws.typing(ack["chat_id"], True)
        assert err.value.code == "not_found"
    assert len((await bob.messages(ack["chat_id"]))["messages"]) == 1


async def test_unknown_endpoint_is_a_json_404(user):
    alice = await user()
    with pytest.raises(ApiError) as err:
        await alice.request("GET", "/no/such/thing")
    assert (err.value.status, err.value.code) == (404, "not_found")
