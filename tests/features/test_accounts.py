"""Registration, login, profiles, devices and contacts."""

from __future__ import annotations

import pytest

from chatd.client import ApiError, ChatdClient
from tests.conftest import PASSWORD
from tests.prometheus import Samples


async def test_register_login_and_profile(base_url):
    async with ChatdClient(base_url) as client:
        created = await client.register("Alice.B", PASSWORD, display_name="Alice B")
        assert created["username"] == "alice.b"
        session = await client.login("ALICE.b", PASSWORD, device_name="laptop")
        assert session["user_id"] == created["user_id"]
        assert {"token", "device_id", "expires_at"} <= set(session)
        me = await client.me()
        assert me["display_name"] == "Alice B" and me["username"] == "alice.b"
        updated = await client.update_me(status_message="busy", display_name="Al")
        assert (updated["status_message"], updated["display_name"]) == ("busy", "Al")
        public = await client.get_user(created["user_id"])
        assert set(public) == {
            "user_id",
            "username",
            "display_name",
            "status_message",
            "avatar_url",
        }


async def test_usernames_are_unique_case_insensitively(base_url):
    async with ChatdClient(base_url) as client:
        await client.register("carol", PASSWORD)
        with pytest.raises(ApiError) as err:
            await client.register("CAROL", PASSWORD)
        assert (err.value.status, err.value.code) == (409, "conflict")


async def test_wrong_password_is_401(base_url, user):
    alice = await user()
    async with ChatdClient(base_url) as client:
        with pytest.raises(ApiError) as err:
            await client.login(alice.username, "not the password")
        assert (err.value.status, err.value.code) == (401, "unauthorized")
        with pytest.raises(ApiError) as err:
            await client.login("nobody-here", PASSWORD)
        assert (err.value.status, err.value.code) == (401, "unauthorized")


async def test_user_search_by_prefix(user):
    await user("searchable_one")
    await user("searchable_two")
    await user("other")
    me = await user()
    found = await me.search_users("searchable", limit=20)
    assert [u["username"] for u in found] == ["searchable_one", "searchable_two"]
    assert len(await me.search_users("searchable", limit=1)) == 1
    assert await me.search_users("%") == []


async def test_unknown_user_is_404(user):
    me = await user()
    with pytest.raises(ApiError) as err:
        await me.get_user("no-such-user")
    assert (err.value.status, err.value.code) == (404, "not_found")


async def test_devices_list_and_revoke(user, device):
    alice = await user()
    phone = await device(alice)
    devices = await alice.devices()
    assert {d["device_id"] for d in devices} == {alice.device_id, phone.device_id}
    assert [d["current"] for d in devices if d["device_id"] == alice.device_id] == [True]
    await alice.revoke_device(phone.device_id)
    with pytest.raises(ApiError) as err:
        await phone.me()
    assert (err.value.status, err.value.code) == (401, "unauthorized")
    assert [d["device_id"] for d in await alice.devices()] == [alice.device_id]


async def test_cannot_revoke_another_users_device(user):
    alice, bob = await user(), await user()
    with pytest.raises(ApiError) as err:
        await alice.revoke_device(bob.device_id)
    assert (err.value.status, err.value.code) == (404, "not_found")
    assert (await bob.me())["user_id"] == bob.user_id


async def test_logout_revokes_the_token(user):
    alice = await user()
    await alice.logout()
    with pytest.raises(ApiError) as err:
        await alice.request("GET", "/users/me")
    assert (err.value.status, err.value.code) == (401, "unauthorized")


async def test_contacts_add_rename_remove(user):
    alice, bob = await user(), await user()
    await alice.add_contact(bob.user_id, name="Bobby")
    await alice.add_contact(bob.user_id, name="Robert")
    contacts = await alice.contacts()
    assert [(c["user_id"], c["name"]) for c in contacts] == [(bob.user_id, "Robert")]
    await alice.remove_contact(bob.user_id)
    assert await alice.contacts() == []
    with pytest.raises(ApiError) as err:
        await alice.remove_contact(bob.user_id)
    assert (err.value.status, err.value.code) == (404, "not_found")
    with pytest.raises(ApiError) as err:
        await alice.add_contact("no-such-user")
    assert (err.value.status, err.value.code) == (404, "not_found")


async def test_health_and_metrics_need_no_auth(base_url, user):
    alice, bob = await user(), await user()
    await alice.send_message(recipient_id=bob.user_id, content="count me")
    async with ChatdClient(base_url) as anonymous:
        health = await anonymous.health()
        assert health["status"] == "ok"
        assert {"node_id", "version", "uptime_s", "connections"} <= set(health)
        metrics = Samples(await anonymous.metrics())
    assert metrics.get("chatd_messages_in_total", transport="rest") == 1  # the one send above


async def test_status_message_can_be_cleared_with_null(user):
    alice = await user()
    await alice.update_me(status_message="away")
    assert (await alice.update_me(status_message=None))["status_message"] == ""
