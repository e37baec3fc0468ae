"""UserStore: unique case-insensitive usernames, lookups, search, paging, updates."""

from __future__ import annotations

import asyncio

import pytest

from chatd.core.errors import ChatdError
from chatd.core.ids import new_id, now_ms
from chatd.core.models import User


async def test_create_then_get_returns_the_same_record(storage):
    user = User(
        user_id=new_id(),
        username="alice",
        display_name="Alice A.",
        password_hash="argon2-hash",
        created_at=now_ms(),
        status_message="hello",
        avatar_media_id="media-1",
        is_admin=True,
        banned=False,
        last_seen=1_700_000_000_000,
    )
    await storage.users.create(user)
    assert await storage.users.get(user.user_id) == user
    assert await storage.users.get_by_name("alice") == user


async def test_unknown_user_is_none(storage, make_user):
    await make_user("alice")
    assert await storage.users.get(new_id()) is None
    assert await storage.users.get_by_name("bob") is None
    assert await storage.users.get_by_name("alic") is None


async def test_username_is_stored_lower_case_and_found_in_any_case(storage, make_user):
    alice = await make_user("AliCe")
    stored = await storage.users.get(alice.user_id)
    assert stored is not None and stored.username == "alice"
    for spelling in ("alice", "ALICE", "aLiCe"):
        found = await storage.users.get_by_name(spelling)
        assert found is not None and found.user_id == alice.user_id


async def test_username_taken_in_another_case_is_a_conflict(storage, make_user):
    alice = await make_user("alice")
    for spelling in ("alice", "ALICE", "Alice"):
        other = User(new_id(), spelling, "Other", "h", now_ms())
        with pytest.raises(ChatdError) as info:
            await storage.users.create(other)
        assert info.value.code == "conflict"
        assert await storage.users.get(other.user_id) is None
    assert await storage.users.get_by_name("alice") == alice


async def test_concurrent_creates_of_one_username_admit_exactly_one(storage):
    users = [User(new_id(), name, name, "h", now_ms()) for name in ["bob", "BOB", "Bob"] * 5]
    results = await asyncio.gather(
        *(storage.users.create(u) for u in users), return_exceptions=True
    )
    winners = [u for u, r in zip(users, results, strict=True) if r is None]
    losers = [r for r in results if r is not None]
    assert len(winners) == 1
    assert all(isinstance(r, ChatdError) and r.code == "conflict" for r in losers)
    found = await storage.users.get_by_name("bob")
    assert found is not None and found.user_id == winners[0].user_id


async def test_search_is_prefix_in_username_order_with_limit(storage, make_user):
    for name in ("bob", "alice", "alfred", "Alma", "albert", "carol", "xal"):
        await make_user(name)

    async def names(prefix: str, limit: int) -> list[str]:
        return [u.username for u in await storage.users.search(prefix, limit)]

    assert await names("al", 10) == ["albert", "alfred", "alice", "alma"]
    assert await names("AL", 10) == ["albert", "alfred", "alice", "alma"]
    assert await names("al", 2) == ["albert", "alfred"]
    assert await names("alf", 10) == ["alfred"]
    assert await names("z", 10) == []
    assert await names("", 100) == sorted(
        ["bob", "alice", "alfred", "alma", "albert", "carol", "xal"]
    )


async def test_search_treats_underscore_percent_and_backslash_literally(storage, make_user):
    for name in ("a_b", "axb", "a%c", "abc", "a\\d", "aed"):
        await make_user(name)

    async def names(prefix: str) -> list[str]:
        return [u.username for u in await storage.users.search(prefix, 10)]

    assert await names("a_") == ["a_b"]
    assert await names("a%") == ["a%c"]
    assert await names("a\\") == ["a\\d"]
    assert await names("_") == []
    assert await names("%") == []


async def test_list_all_pages_in_username_order(storage, make_user):
    created = sorted(n for n in ("dave", "bob", "erin", "alice", "carol"))
    for name in reversed(created):
        await make_user(name)

    first = await storage.users.list_all(2)
    assert [u.username for u in first] == created[:2]
    second = await storage.users.list_all(2, first[-1].username)
    assert [u.username for u in second] == created[2:4]
    third = await storage.users.list_all(2, second[-1].username)
    assert [u.username for u in third] == created[4:]
    assert await storage.users.list_all(2, third[-1].username) == []
    assert [u.username for u in await storage.users.list_all(100)] == created


async def test_update_sets_fields_and_returns_the_new_record(storage, make_user):
    alice = await make_user("alice")
    updated = await storage.users.update(
        alice.user_id,
        display_name="Alice Liddell",
        status_message="down the hole",
        avatar_media_id="media-9",
        password_hash="new-hash",
        is_admin=True,
        banned=True,
        last_seen=1_700_000_000_123,
    )
    expected = User(
        user_id=alice.user_id,
        username="alice",
        display_name="Alice Liddell",
        password_hash="new-hash",
        created_at=alice.created_at,
        status_message="down the hole",
        avatar_media_id="media-9",
        is_admin=True,
        banned=True,
        last_seen=1_700_000_000_123,
    )
    assert updated == expected
    assert updated is not None and updated.is_admin is True and updated.banned is True
    assert await storage.users.get(alice.user_id) == expected


async def test_update_changes_only_named_fields_and_can_clear(storage, make_user):
    alice = await make_user("alice", avatar_media_id="media-1", is_admin=True)
    bob = await make_user("bob")
    updated = await storage.users.update(alice.user_id, avatar_media_id=None, is_admin=False)
    assert updated is not None
    assert updated.avatar_media_id is None and updated.is_admin is False
    assert updated.display_name == alice.display_name
    assert updated.password_hash == alice.password_hash
    assert await storage.users.get(bob.user_id) == bob


async def test_update_with_no_fields_returns_the_current_record(storage, make_user):
    alice = await make_user("alice")
    assert await storage.users.update(alice.user_id) == alice


async def test_update_of_unknown_user_is_none(storage):
    assert await storage.users.update(new_id(), display_name="Nobody") is None


@pytest.mark.parametrize("field", ["username", "created_at", "no_such_field"])
async def test_update_rejects_fields_outside_the_profile(storage, make_user, field):
    alice = await make_user("alice")
    # The port names the updatable fields; anything else is refused (ValueError, or
    # a ChatdError), and nothing of the call is applied.
    with pytest.raises((ValueError, ChatdError)):
        await storage.users.update(alice.user_id, display_name="Changed", **{field: "x"})
    assert await storage.users.get(alice.user_id) == alice


async def test_two_nodes_cannot_both_take_a_username(storage, second_node):
    users = [User(new_id(), name, name, "h", now_ms()) for name in ("dave", "Dave") * 5]
    nodes = [storage, second_node] * 5
    results = await asyncio.gather(
        *(node.users.create(u) for node, u in zip(nodes, users, strict=True)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(r is None or (isinstance(r, ChatdError) and r.code == "conflict") for r in results)
    assert await storage.users.get_by_name("DAVE") == await second_node.users.get_by_name("dave")


async def test_group_add_is_everyone_until_set(storage, make_user):
    alice = await make_user("alice")
    assert (await storage.users.get(alice.user_id)).group_add == "everyone"  # type: ignore[union-attr]
    updated = await storage.users.update(alice.user_id, group_add="contacts")
    assert updated is not None and updated.group_add == "contacts"
    assert await storage.users.get_by_name("alice") == updated
    choosy = await make_user("bob", group_add="contacts")
    assert (await storage.users.get(choosy.user_id)) == choosy


async def test_search_after_pages_a_prefix_and_sees_no_name_twice(storage, make_user):
    for name in ("al1", "al2", "al3", "alb", "am1", "bob", "a1"):
        await make_user(name)

    async def page(prefix: str, after: str, limit: int = 2) -> list[str]:
        return [u.username for u in await storage.users.search(prefix, limit, after)]

    assert await page("al", "") == ["al1", "al2"]
    await make_user("al0")  # added below the cursor: the next pages go on from it
    await make_user("al25")
    assert await page("al", "al2") == ["al25", "al3"]
    assert await page("al", "al3") == ["alb"]
    assert await page("al", "alb") == []
    assert await page("a", "al3", 10) == ["alb", "am1"]
    assert await page("", "alb", 10) == ["am1", "bob"]
    assert await page("", "", 3) == ["a1", "al0", "al1"]
