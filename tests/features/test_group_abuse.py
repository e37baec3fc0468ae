"""Groups as a weapon: adding people who did not ask, floods of groups and changes,
and an inbox that stays cheap to read however many groups one is put in."""

from __future__ import annotations

import asyncio

import pytest

from chatd.client import ApiError
from tests.abuse_checks import assert_still_healthy


@pytest.fixture
def config_overrides():
    return {"limits": {"groups_created_per_hour": 30, "group_changes_per_minute": 5}}


@pytest.fixture
async def bystanders(user):
    bob, carol = await user(), await user()
    async with carol.connect() as carol_ws:
        yield bob, carol, carol_ws


async def refused(call, status: int, code: str) -> ApiError:
    with pytest.raises(ApiError) as err:
        await call
    assert (err.value.status, err.value.code) == (status, code)
    return err.value


async def test_contacts_only_users_cannot_be_added_by_strangers(user):
    victim, mallory, friend, other = await user(), await user(), await user(), await user()
    assert (await victim.me())["group_add"] == "everyone"
    await refused(victim.update_me(group_add="nobody"), 400, "bad_request")
    assert (await victim.update_me(group_add="contacts"))["group_add"] == "contacts"
    assert (await victim.me())["group_add"] == "contacts"
    await victim.add_contact(friend.user_id)

    # A stranger cannot put the victim in a new group, nor in one that exists:
    # the whole request fails and changes nothing.
    await refused(mallory.create_group("spam", [other.user_id, victim.user_id]), 403, "forbidden")
    group = await mallory.create_group("spam", [other.user_id])
    await refused(mallory.add_members(group["group_id"], [victim.user_id]), 403, "forbidden")
    assert [m["user_id"] for m in (await mallory.get_group(group["group_id"]))["members"]] == [
        mallory.user_id,
        other.user_id,
    ]
    assert await victim.chats() == []

    # A contact may; and others who did not opt out are unaffected.
    made = await friend.create_group("friends", [victim.user_id, other.user_id])
    assert {m["user_id"] for m in made["members"]} == {
        friend.user_id,
        victim.user_id,
        other.user_id,
    }
    assert [c["chat_id"] for c in await victim.chats()] == [made["group_id"]]


async def test_group_creation_is_rate_limited(base_url, user, bystanders):
    bob, carol, carol_ws = bystanders
    victim, mallory = await user(), await user()
    made = await asyncio.gather(
        *(mallory.create_group(f"g{i}", [victim.user_id]) for i in range(30))
    )
    assert len({g["group_id"] for g in made}) == 30  # the hour's allowance, in one burst
    errors = await asyncio.gather(
        *(mallory.create_group(f"more{i}", [victim.user_id]) for i in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(e, ApiError) and e.code == "rate_limited" for e in errors)
    assert all(e.retry_after and e.retry_after >= 60 for e in errors)  # type: ignore[union-attr]
    assert len(await victim.chats()) == 30
    await assert_still_healthy(base_url, bob, carol, carol_ws)


async def test_group_changes_are_rate_limited_but_leaving_is_not(base_url, user, bystanders):
    bob, carol, carol_ws = bystanders
    victim, mallory = await user(), await user()
    gid = (await mallory.create_group("g", [victim.user_id]))["group_id"]
    for i in range(5):
        await mallory.update_group(gid, name=f"rename {i}")
    err = await refused(mallory.update_group(gid, name="one too many"), 429, "rate_limited")
    assert err.retry_after and err.retry_after >= 1
    await refused(mallory.add_members(gid, [bob.user_id]), 429, "rate_limited")
    assert (await victim.get_group(gid))["name"] == "rename 4"
    await victim.remove_member(gid, victim.user_id)  # leaving: never held back
    assert (await victim.chats())[0]["is_member"] is False
    await assert_still_healthy(base_url, bob, carol, carol_ws)


@pytest.mark.parametrize("config_overrides", [{"limits": {"groups_created_per_hour": 0}}])
async def test_the_inbox_comes_in_pages_by_activity_with_a_stable_cursor(user):
    victim, mallory = await user(), await user()
    groups = [
        (await mallory.create_group(f"g{i}", [victim.user_id]))["group_id"] for i in range(25)
    ]
    newest_first = groups[::-1]

    first = await victim.chats_page(limit=10)
    assert [c["chat_id"] for c in first["chats"]] == newest_first[:10]
    # Activity while the victim walks: a chat already shown moves to the front,
    # one not shown yet moves there too; neither is shown twice.
    await mallory.send_message(chat_id=newest_first[2], content="bump shown")
    await mallory.send_message(chat_id=newest_first[15], content="bump unseen")
    second = await victim.chats_page(limit=10, cursor=first["next_cursor"])
    third = await victim.chats_page(limit=10, cursor=second["next_cursor"])
    assert third["next_cursor"] is None
    walked = [c["chat_id"] for page in (first, second, third) for c in page["chats"]]
    assert len(walked) == len(set(walked)) == 24
    assert set(groups) - set(walked) == {newest_first[15]}  # it is at the front now

    everything = await victim.chats(page_size=7)  # the client follows the cursor
    assert [c["chat_id"] for c in everything[:2]] == [newest_first[15], newest_first[2]]
    assert sorted(c["chat_id"] for c in everything) == sorted(groups)
    assert everything[0]["last_message"]["content"] == "bump unseen"
    assert (await victim.chats_page())["next_cursor"] is None  # 200 by default

    await refused(victim.chats_page(limit=501), 400, "bad_request")
    await refused(victim.chats_page(cursor="not-a-cursor!"), 400, "bad_request")
