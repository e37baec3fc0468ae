"""Who may sign up, how long a login lasts, and what logs a user out.

The server-side settings (``[auth] token_ttl_days``, ``registration``,
``min_password_length``) each get a server configured with them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from typer.testing import CliRunner

from chatd.cli import app as cli
from chatd.client import ApiError, ChatdClient
from chatd.core import ids
from chatd.gateway.context import SERVICES
from tests.conftest import PASSWORD

DAY_MS = 86_400_000


def when(timestamp: str) -> int:
    """An RFC 3339 timestamp of the API, in epoch milliseconds."""
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


async def closed_with(ws, within: float = 10.0) -> int | None:
    """The close code once the server has closed the session."""
    async with asyncio.timeout(within):
        while not ws.closed:
            await asyncio.sleep(0.02)
    return ws.close_code


async def refused(client: ChatdClient) -> tuple[int | None, str]:
    """How the server refuses a WebSocket upgrade with the client's token."""
    with pytest.raises(ApiError) as err:
        async with client.connect(reconnect=False):
            pass
    return err.value.status, err.value.code


@pytest.mark.parametrize("config_overrides", [{"auth": {"token_ttl_days": 2}}], ids=["ttl2"])
async def test_a_token_expires_after_token_ttl_days(user, monkeypatch):
    alice = await user()
    (laptop,) = await alice.devices()
    assert when(laptop["expires_at"]) - when(laptop["created_at"]) == 2 * DAY_MS

    real_now = ids.now_ms

    def clock(offset_ms: int) -> None:
        """Move the server's idea of now; the token's expiry is what is under test."""
        monkeypatch.setattr("chatd.core.services.accounts.now_ms", lambda: real_now() + offset_ms)

    async with alice.connect(reconnect=False) as ws:
        clock(when(laptop["expires_at"]) - real_now() - 60_000)  # a minute before expiry
        assert (await alice.me())["user_id"] == alice.user_id
        clock(when(laptop["expires_at"]) - real_now())
        with pytest.raises(ApiError) as err:
            await alice.me()
        assert (err.value.status, err.value.code) == (401, "unauthorized")
        assert await refused(alice) == (401, "unauthorized")
        # Documented: an open socket is not closed by expiry, only the next connect fails.
        assert "server_time" in await ws.ping()


@pytest.mark.sqlite_only  # the command works on the data dir
async def test_password_change_from_the_cli_logs_out_every_device(user, device, server, base_url):
    alice = await user()
    phone = await device(alice)
    data_dir = str(server.app[SERVICES].storage.db.path.parent)

    def passwd(password: str):
        return CliRunner().invoke(
            cli,
            ["user", "passwd", alice.username, "--password-stdin", "--data-dir", data_dir],
            input=password + "\n",
        )

    async with alice.connect(reconnect=False) as laptop_ws, phone.connect(reconnect=False) as ph:
        short = await asyncio.to_thread(passwd, "short")  # under min_password_length (6)
        assert short.exit_code == 1 and "password" in short.output, short.output
        assert "server_time" in await laptop_ws.ping()  # a refused change logs nobody out

        changed = await asyncio.to_thread(passwd, "a brand new password")
        assert changed.exit_code == 0, changed.output
        assert f"password of {alice.username} changed" in changed.output
        assert await closed_with(laptop_ws) == 1008
        assert await closed_with(ph) == 1008
    for client in (alice, phone):
        with pytest.raises(ApiError) as err:
            await client.me()
        assert (err.value.status, err.value.code) == (401, "unauthorized")
        assert await refused(client) == (401, "unauthorized")
    async with ChatdClient(base_url) as again:
        with pytest.raises(ApiError) as err:
            await again.login(alice.username, PASSWORD)
        assert (err.value.status, err.value.code) == (401, "unauthorized")
        await again.login(alice.username, "a brand new password")
        assert (await again.me())["user_id"] == alice.user_id


@pytest.mark.parametrize("config_overrides", [{"auth": {"registration": "closed"}}], ids=["closed"])
async def test_closed_registration_refuses_everyone_but_admin_made_accounts(base_url, server):
    services = server.app[SERVICES]
    code = (await services.admin.invite("cli", 1, 3600))["code"]
    async with ChatdClient(base_url) as client:
        for invite in (None, code):  # not even with an invite
            with pytest.raises(ApiError) as err:
                await client.register("walk_in", PASSWORD, invite_code=invite)
            assert (err.value.status, err.value.code) == (403, "forbidden")
        with pytest.raises(ApiError) as err:
            await client.login("walk_in", PASSWORD)
        assert (err.value.status, err.value.code) == (401, "unauthorized")
        await services.admin.create_user("cli", "made_by_admin", PASSWORD)  # `chatd user add`
        session = await client.login("made_by_admin", PASSWORD)
        assert (await client.me())["user_id"] == session["user_id"]


@pytest.mark.parametrize("config_overrides", [{"auth": {"min_password_length": 10}}], ids=["10"])
async def test_min_password_length_applies_to_registration(base_url):
    async with ChatdClient(base_url) as client:
        for password in ("123456789", "x" * 1025):  # one short of 10; over the 1024 cap
            with pytest.raises(ApiError) as err:
                await client.register("carol", password)
            assert (err.value.status, err.value.code) == (400, "bad_request")
        await client.register("carol", "1234567890")
        await client.login("carol", "1234567890")


async def test_a_banned_user_cannot_open_a_websocket(user, server, base_url):
    admin = server.app[SERVICES].admin
    mallory, bob = await user(), await user()
    async with mallory.connect(reconnect=False) as ws:
        await admin.ban("cli", mallory.user_id)
        assert await closed_with(ws) == 1008
    assert await refused(mallory) == (401, "unauthorized")  # the ban revoked every token
    with pytest.raises(ApiError) as err:
        await mallory.send_message(recipient_id=bob.user_id, content="still here?")
    assert (err.value.status, err.value.code) == (401, "unauthorized")
    async with ChatdClient(base_url) as again:
        with pytest.raises(ApiError) as err:
            await again.login(mallory.username, PASSWORD)
        assert (err.value.status, err.value.code) == (403, "forbidden")
        await admin.unban("cli", mallory.user_id)
        await again.login(mallory.username, PASSWORD)  # a new login after the ban is lifted
        async with again.connect(reconnect=False) as ws:
            assert "server_time" in await ws.ping()
