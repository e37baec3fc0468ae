"""Group chat: membership, admins, limits, system messages, fan-out and receipts."""

from __future__ import annotations

import asyncio
import json

import pytest

from chatd.client import ApiError
from tests.conftest import before_sentinel


async def users(user, n: int):
    return list(await asyncio.gather(*(user() for _ in range(n))))


def system_event(message: dict) -> dict:
    assert message["type"] == "system"
    return json.loads(message["content"])


async def test_create_group_makes_the_creator_admin(user):
    alice, bob, carol = await users(user, 3)
    group = await alice.request(
        "POST",
        "/groups",
        json={
            "name": "Climbing",
            "description": "Saturdays",
            "member_ids": [bob.user_id, carol.user_id],
        },
    )
    assert group["name"] == "Climbing" and group["description"] == "Saturdays"
    roles = {m["user_id"]: m["role"] for m in group["members"]}
    assert roles == {alice.user_id: "admin", bob.user_id: "member", carol.user_id: "member"}
    assert all(m["joined_at"].endswith("Z") for m in group["members"])
    assert group["created_at"].endswith("Z")
    assert await bob.request("GET", f"/groups/{group['group_id']}") == group
    chats = await bob.chats()
    assert chats[0]["chat_id"] == group["group_id"] and chats[0]["kind"] == "group"
    assert chats[0]["title"] == "Climbing"
    created = system_event(chats[0]["last_message"])
    assert created["event"] == "created" and created["actor_id"] == alice.user_id
    assert set(created["user_ids"]) == {bob.user_id, carol.user_id}


async def test_group_messages_reach_every_device_of_every_member(user, device):
    alice, bob, carol = await users(user, 3)
    bob_phone = await device(bob)
    group = await alice.request(
        "POST", "/groups", json={"name": "g", "member_ids": [bob.user_id, carol.user_id]}
    )
    async with (
        alice.connect() as a,
        bob.connect() as b1,
        bob_phone.connect() as b2,
        carol.connect() as c,
    ):
        for ws in (a, b1, b2, c):  # the creation notice is replayed to everyone
            assert (await ws.next_event("new_message"))["data"]["type"] == "system"
        ack = await a.send_message(chat_id=group["group_id"], content="hello all")
        for ws in (b1, b2, c):
            got = (await ws.next_event("new_message"))["data"]
            assert got["message_id"] == ack["message_id"] and got["content"] == "hello all"
        assert await before_sentinel(a, bob, chat_id=group["group_id"]) == []  # not her own


async def test_non_admins_cannot_change_the_group(user):
    alice, bob, carol, dave = await users(user, 4)
    group = await alice.request(
        "POST", "/groups", json={"name": "g", "member_ids": [bob.user_id, carol.user_id]}
    )
    gid = group["group_id"]
    for method, path, body in [
        ("POST", f"/groups/{gid}/members", {"user_ids": [dave.user_id]}),
        ("DELETE", f"/groups/{gid}/members/{carol.user_id}", None),
        ("PATCH", f"/groups/{gid}", {"name": "mine now"}),
        ("PATCH", f"/groups/{gid}/members/{bob.user_id}", {"role": "admin"}),
    ]:
        with pytest.raises(ApiError) as err:
            await bob.request(method, path, json=body)
        assert (err.value.status, err.value.code) == (403, "forbidden"), path
    assert await alice.request("GET", f"/groups/{gid}") == group


async def test_non_members_cannot_read_or_send(user):
    alice, bob, mallory = await users(user, 3)
    group = await alice.request("POST", "/groups", json={"name": "g", "member_ids": [bob.user_id]})
    gid = group["group_id"]
    await alice.send_message(chat_id=gid, content="members only")
    for call in (
        mallory.request("GET", f"/groups/{gid}"),
        mallory.messages(gid),
        mallory.send_message(chat_id=gid, content="let me in"),
        mallory.request("POST", f"/groups/{gid}/members", json={"user_ids": [mallory.user_id]}),
        mallory.request("PATCH", f"/groups/{gid}", json={"name": "x"}),
    ):
        with pytest.raises(ApiError) as err:
            await call
        assert err.value.code == "not_found"


async def test_admin_renames_and_members_see_a_system_message(user):
    alice, bob = await users(user, 2)
    group = await alice.request(
        "POST", "/groups", json={"name": "old", "member_ids": [bob.user_id]}
    )
    gid = group["group_id"]
    async with bob.connect() as b:
        await b.next_event("new_message")
        renamed = await alice.request(
            "PATCH", f"/groups/{gid}", json={"name": "new", "description": "d"}
        )
        assert (renamed["name"], renamed["description"]) == ("new", "d")
        event = system_event((await b.next_event("new_message"))["data"])
        assert event["event"] == "updated" and event["changes"] == {
            "name": "new",
            "description": "d",
        }
    assert (await bob.chats())[0]["title"] == "new"


async def test_removed_member_keeps_history_up_to_removal_and_gets_nothing_after(user):
    alice, bob, carol = await users(user, 3)
    group = await alice.request(
        "POST", "/groups", json={"name": "g", "member_ids": [bob.user_id, carol.user_id]}
    )
    gid = group["group_id"]
    await alice.send_message(chat_id=gid, content="before")
    async with carol.connect() as c:
        await c.collect("new_message", 2)
        after = await alice.request("DELETE", f"/groups/{gid}/members/{carol.user_id}")
        assert carol.user_id not in {m["user_id"] for m in after["members"]}
        removed = system_event((await c.next_event("new_message"))["data"])
        assert removed["event"] == "removed" and removed["user_ids"] == [carol.user_id]
        await alice.send_message(chat_id=gid, content="after")
        got = await before_sentinel(c, alice, recipient_id=carol.user_id)
        assert [m for m in got if m["chat_id"] == gid] == []
    async with carol.connect() as c:  # nor on reconnect
        got = await before_sentinel(c, alice, recipient_id=carol.user_id)
        assert [m for m in got if m["chat_id"] == gid] == []
    history = await carol.messages(gid)
    assert [m["content"] for m in history["messages"]][1] == "before"
    assert "after" not in [m["content"] for m in history["messages"]]
    with pytest.raises(ApiError) as err:
        await carol.send_message(chat_id=gid, content="still here?")
    assert err.value.code == "not_found"
    with pytest.raises(ApiError) as err:
        await carol.request("GET", f"/groups/{gid}")
    assert (err.value.status, err.value.code) == (404, "not_found")
    inbox = next(c for c in await carol.chats() if c["chat_id"] == gid)
    assert inbox["is_member"] is False and inbox["last_seq"] == 3 and inbox["unread_count"] == 3


async def test_member_added_later_sees_history_from_the_join(user):
    alice, bob, carol = await users(user, 3)
    group = await alice.request("POST", "/groups", json={"name": "g", "member_ids": [bob.user_id]})
    gid = group["group_id"]
    await alice.send_message(chat_id=gid, content="before carol")
    await alice.request("POST", f"/groups/{gid}/members", json={"user_ids": [carol.user_id]})
    await bob.send_message(chat_id=gid, content="welcome carol")
    page = await carol.messages(gid)
    contents = [m["content"] for m in reversed(page["messages"])]
    assert system_event(page["messages"][-1])["event"] == "added"
    assert contents[-1] == "welcome carol" and "before carol" not in contents
    assert page["next_cursor"] is None
    sync = await carol.messages(gid, after_seq=0)
    assert [m["seq"] for m in sync["messages"]] == [3, 4]
    async with carol.connect() as c:
        got = await c.collect("new_message", 2)
        assert [e["data"]["seq"] for e in got] == [3, 4]
    entry = next(c for c in await carol.chats() if c["chat_id"] == gid)
    assert entry["unread_count"] == 2


async def test_last_admin_leaving_promotes_the_longest_standing_member(user):
    alice, bob, carol = await users(user, 3)
    group = await alice.request("POST", "/groups", json={"name": "g", "member_ids": [bob.user_id]})
    gid = group["group_id"]
    await alice.request("POST", f"/groups/{gid}/members", json={"user_ids": [carol.user_id]})
    await alice.request("DELETE", f"/groups/{gid}/members/{alice.user_id}")
    now = await bob.request("GET", f"/groups/{gid}")
    roles = {m["user_id"]: m["role"] for m in now["members"]}
    assert roles == {bob.user_id: "admin", carol.user_id: "member"}
    left = system_event((await bob.messages(gid))["messages"][0])
    assert left["event"] == "left" and left["promoted"] == [bob.user_id]


async def test_roles_can_change_but_never_leave_no_admin(user):
    alice, bob = await users(user, 2)
    group = await alice.request("POST", "/groups", json={"name": "g", "member_ids": [bob.user_id]})
    gid = group["group_id"]
    with pytest.raises(ApiError) as err:
        await alice.request(
            "PATCH", f"/groups/{gid}/members/{alice.user_id}", json={"role": "member"}
        )
    assert err.value.code == "conflict"
    await alice.request("PATCH", f"/groups/{gid}/members/{bob.user_id}", json={"role": "admin"})
    await alice.request("PATCH", f"/groups/{gid}/members/{alice.user_id}", json={"role": "member"})
    roles = {
        m["user_id"]: m["role"] for m in (await bob.request("GET", f"/groups/{gid}"))["members"]
    }
    assert roles == {alice.user_id: "member", bob.user_id: "admin"}
    with pytest.raises(ApiError) as err:
        await bob.request("PATCH", f"/groups/{gid}/members/{alice.user_id}", json={"role": "king"})
    assert err.value.code == "bad_request"


async def test_group_status_is_delivered_and_read_only_after_the_last_member(user):
    alice, bob, carol = await users(user, 3)
    group = await alice.request(
        "POST", "/groups", json={"name": "g", "member_ids": [bob.user_id, carol.user_id]}
    )
    gid = group["group_id"]
    ack = await alice.send_message(chat_id=gid, content="status?")

    async def status():
        return (await alice.messages(gid))["messages"][0]["status"]

    async with alice.connect() as a:
        async with bob.connect() as b:
            await b.collect("new_message", 2)
            delivered = (await a.next_event("message_delivered"))["data"]
            assert delivered["user_id"] == bob.user_id and delivered["seq"] == ack["seq"]
            assert await status() == "sent"  # carol has not got it yet
            await b.read_receipt(gid, ack["message_id"])
            assert (await a.next_event("message_read"))["data"]["user_id"] == bob.user_id
            assert await status() == "sent"
        async with carol.connect() as c:
            await c.collect("new_message", 2)
            assert (await a.next_event("message_delivered"))["data"]["user_id"] == carol.user_id
            assert await status() == "delivered"
            await c.read_receipt(gid, ack["message_id"])
            assert (await a.next_event("message_read"))["data"]["user_id"] == carol.user_id
            assert await status() == "read"


async def test_typing_goes_to_the_other_online_members(user):
    alice, bob, carol = await users(user, 3)
    group = await alice.request(
        "POST", "/groups", json={"name": "g", "member_ids": [bob.user_id, carol.user_id]}
    )
    async with alice.connect() as a, bob.connect() as b, carol.connect() as c:
        await a.typing(group["group_id"], True)
        for ws in (b, c):
            data = (await ws.next_event("typing_indicator"))["data"]
            assert data == {
                "chat_id": group["group_id"],
                "user_id": alice.user_id,
                "is_typing": True,
            }
        assert [e for e in await a.drain() if e["type"] == "typing_indicator"] == []


async def test_bad_group_requests(user):
    alice = await user()
    for body in (
        {"member_ids": []},
        {"name": "", "member_ids": []},
        {"name": "g"},
        {"name": "g", "member_ids": "x"},
        {"name": 5, "member_ids": []},
    ):
        with pytest.raises(ApiError) as err:
            await alice.request("POST", "/groups", json=body)
        assert err.value.code == "bad_request", body
    with pytest.raises(ApiError) as err:
        await alice.request("POST", "/groups", json={"name": "g", "member_ids": ["nobody"]})
    assert err.value.code == "not_found"
    assert await alice.chats() == []
