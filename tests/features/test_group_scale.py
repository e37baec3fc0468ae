"""A full 256-member group, and the size limit under concurrent adds."""

from __future__ import annotations

import asyncio

import pytest

from chatd.client import ApiError


@pytest.fixture
def config_overrides():
    return {"limits": {"max_group_members": 256}}


async def test_full_256_member_group(user):
    members = []
    for start in range(0, 256, 32):  # register in waves to keep the test server calm
        members += await asyncio.gather(*(user() for _ in range(start, min(256, start + 32))))
    admin, others = members[0], members[1:]
    group = await admin.request(
        "POST", "/groups", json={"name": "everyone", "member_ids": [m.user_id for m in others]}
    )
    gid = group["group_id"]
    assert len(group["members"]) == 256

    extra = await user()
    with pytest.raises(ApiError) as err:
        await admin.request("POST", f"/groups/{gid}/members", json={"user_ids": [extra.user_id]})
    assert (err.value.status, err.value.code) == (409, "conflict")
    assert await admin.request("GET", f"/groups/{gid}") == group
    assert (await admin.chats())[0]["last_seq"] == 1  # no system message for a refused add

    online, offline = others[:40], others[40:]
    sockets = [await m.connect(auto_delivery_receipts=False).open() for m in online]
    try:
        for ws in sockets:
            assert (await ws.next_event("new_message"))["data"]["seq"] == 1
        ack = await admin.send_message(chat_id=gid, content="to all 256")
        for ws in sockets:
            got = await ws.next_event("new_message")
            assert got["data"]["message_id"] == ack["message_id"]
        # Each exactly once: the next message after it is the one sent after it.
        again = await admin.send_message(chat_id=gid, content="to all 256, again")
        for ws in sockets:
            got = await ws.next_event("new_message")
            assert got["data"]["message_id"] == again["message_id"]
    finally:
        for ws in sockets:
            await ws.close()

    for member in offline[:8]:
        async with member.connect() as ws:
            got = await ws.collect("new_message", 3)
            assert [e["data"]["seq"] for e in got] == [1, 2, 3]
    for member in (offline[100], online[3]):
        entry = (await member.chats())[0]
        assert (entry["chat_id"], entry["last_seq"], entry["unread_count"]) == (gid, 3, 3)
        assert entry["last_message"]["content"] == "to all 256, again"
    assert (await admin.chats())[0]["unread_count"] == 0


@pytest.mark.parametrize("config_overrides", [{"limits": {"max_group_members": 6}}], ids=["6"])
async def test_concurrent_adds_by_two_admins_never_exceed_the_limit(user):
    alice, bob = await user(), await user()
    for _ in range(5):
        group = await alice.request(
            "POST", "/groups", json={"name": "g", "member_ids": [bob.user_id]}
        )
        assert group["max_members"] == 6
        gid = group["group_id"]
        await alice.request("PATCH", f"/groups/{gid}/members/{bob.user_id}", json={"role": "admin"})
        newcomers = [await user() for _ in range(6)]
        results = await asyncio.gather(
            alice.request(
                "POST",
                f"/groups/{gid}/members",
                json={"user_ids": [u.user_id for u in newcomers[:3]]},
            ),
            bob.request(
                "POST",
                f"/groups/{gid}/members",
                json={"user_ids": [u.user_id for u in newcomers[3:]]},
            ),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, ApiError)]
        assert len(refused) == 1 and refused[0].code == "conflict"
        final = await alice.request("GET", f"/groups/{gid}")
        assert len(final["members"]) == 5
