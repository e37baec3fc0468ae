"""ContactStore: upsert, delete, per-user list and the reverse (watchers) index."""

from __future__ import annotations

from chatd.core.ids import new_id, now_ms
from chatd.core.models import Contact


def contact(owner, other, name: str | None = None) -> Contact:
    return Contact(owner.user_id, other.user_id, name, now_ms())


async def test_put_then_list(storage, make_user):
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    to_bob, to_carol = contact(alice, bob, "Bobby"), contact(alice, carol)
    await storage.contacts.put(to_bob)
    await storage.contacts.put(to_carol)

    listed = await storage.contacts.list_for_user(alice.user_id)
    assert sorted(listed, key=lambda c: c.contact_id) == sorted(
        [to_bob, to_carol], key=lambda c: c.contact_id
    )
    assert await storage.contacts.list_for_user(bob.user_id) == []
    assert await storage.contacts.list_for_user(new_id()) == []


async def test_put_is_an_upsert_that_updates_the_name(storage, make_user):
    alice, bob = await make_user("alice"), await make_user("bob")
    await storage.contacts.put(contact(alice, bob, "Bobby"))
    await storage.contacts.put(contact(alice, bob, "Robert"))
    (only,) = await storage.contacts.list_for_user(alice.user_id)
    assert (only.user_id, only.contact_id, only.name) == (alice.user_id, bob.user_id, "Robert")

    await storage.contacts.put(contact(alice, bob, None))
    (only,) = await storage.contacts.list_for_user(alice.user_id)
    assert only.name is None


async def test_delete_is_true_once_then_false(storage, make_user):
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    await storage.contacts.put(contact(alice, bob))
    await storage.contacts.put(contact(alice, carol))
    await storage.contacts.put(contact(bob, carol))

    assert await storage.contacts.delete(alice.user_id, bob.user_id) is True
    assert await storage.contacts.delete(alice.user_id, bob.user_id) is False
    assert await storage.contacts.delete(carol.user_id, alice.user_id) is False
    assert [c.contact_id for c in await storage.contacts.list_for_user(alice.user_id)] == [
        carol.user_id
    ]
    assert [c.contact_id for c in await storage.contacts.list_for_user(bob.user_id)] == [
        carol.user_id
    ]


async def test_watchers_are_the_users_who_have_the_contact(storage, make_user):
    alice, bob, carol, dave = [await make_user(n) for n in ("alice", "bob", "carol", "dave")]
    await storage.contacts.put(contact(alice, carol))
    await storage.contacts.put(contact(bob, carol))
    await storage.contacts.put(contact(carol, dave))

    assert sorted(await storage.contacts.watchers(carol.user_id)) == sorted(
        [alice.user_id, bob.user_id]
    )
    assert await storage.contacts.watchers(dave.user_id) == [carol.user_id]
    assert await storage.contacts.watchers(alice.user_id) == []

    await storage.contacts.delete(alice.user_id, carol.user_id)
    assert await storage.contacts.watchers(carol.user_id) == [bob.user_id]
