"""The configured storage backend is the one that holds the data."""

from __future__ import annotations

import asyncio

from tests.scylla_server import scylla_server


async def test_accounts_land_in_the_configured_store(user, services, server_storage):
    alice = await user()
    if server_storage == "scylla":
        rows = await asyncio.to_thread(
            scylla_server().execute,
            "SELECT user_id FROM {ks}.usernames WHERE username = %s",
            (alice.username,),
        )
        assert [r.user_id for r in rows] == [alice.user_id]
    else:
        storage = services.storage
        assert (await storage.users.get_by_name(alice.username)).user_id == alice.user_id
        assert storage.db.path.is_file()
