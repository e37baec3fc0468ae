"""Revocation, bans, rate limits and the WebSocket Origin allow-list."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from typer.testing import CliRunner

from chatd.cli import app as cli
from chatd.client import ApiError, ChatdClient
from tests.conftest import PASSWORD, raw_ws


@pytest.fixture
def config_overrides():
    return {
        # One message per 20 s, bursts of one: a second send in a test is always refused.
        "limits": {"messages_per_second": 0.05, "login_attempts_per_minute": 3},
        "server": {"allowed_origins": ["https://chat.example.org"]},
    }


async def wait_closed(ws, within: float = 5.0) -> int | None:
    async with asyncio.timeout(within):
        while not ws.closed:
            await asyncio.sleep(0.02)
    return ws.close_code


async def test_logout_closes_that_devices_sockets_at_once(user, device):
    alice = await user()
    phone = await device(alice)
    async with alice.connect(reconnect=False) as laptop_ws, phone.connect(reconnect=False) as ph:
        await alice.logout()
        assert await wait_closed(laptop_ws, 2) == 1008
        assert not ph.closed  # the other device stays logged in
        assert "server_time" in await ph.ping()


async def test_revoking_a_device_closes_its_socket(user, device):
    alice = await user()
    phone = await device(alice)
    async with phone.connect(reconnect=False) as ph:
        await alice.revoke_device(phone.device_id)
        assert await wait_closed(ph, 2) == 1008
    with pytest.raises(ApiError) as err:
        async with phone.connect(reconnect=False):
            pass
    assert (err.value.status, err.value.code) == (401, "unauthorized")


@pytest.mark.sqlite_only  # the command works on the data dir
async def test_ban_from_the_cli_closes_open_sockets_and_refuses_login(user, services, base_url):
    mallory = await user()
    data_dir = services.storage.db.path.parent
    async with mallory.connect(reconnect=False) as ws:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["user", "ban", mallory.username, "--data-dir", str(data_dir)]
        )
        assert result.exit_code == 0, result.output
        assert await wait_closed(ws, 5) == 1008  # the server polls the revocation feed
    with pytest.raises(ApiError) as err:
        await mallory.me()
    assert (err.value.status, err.value.code) == (401, "unauthorized")  # every token revoked
    async with ChatdClient(base_url) as again:
        with pytest.raises(ApiError) as err:
            await again.login(mallory.username, PASSWORD)
        assert (err.value.status, err.value.code) == (403, "forbidden")
        result = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["user", "unban", mallory.username, "--data-dir", str(data_dir)],
        )
        assert result.exit_code == 0
        await again.login(mallory.username, PASSWORD)  # unbanned: a new login works
        assert (await again.me())["user_id"] == mallory.user_id
    with pytest.raises(ApiError) as err:
        await mallory.me()  # the old token stays revoked
    assert (err.value.status, err.value.code) == (401, "unauthorized")


async def test_message_rate_limit_counts_ws_and_rest_together(user):
    alice, bob = await user(), await user()
    first = await alice.send_message(recipient_id=bob.user_id, content="over rest")
    async with alice.connect() as ws:
        with pytest.raises(ApiError) as err:
            await ws.send_message(chat_id=first["chat_id"], content="over the socket")
        assert err.value.code == "rate_limited"
        assert 1_000 < err.value.details["retry_after_ms"] <= 20_001  # about 20 s to wait
        assert "server_time" in await ws.ping()  # the socket stays open
    with pytest.raises(ApiError) as err:
        await alice.send_message(chat_id=first["chat_id"], content="over rest again")
    assert (err.value.status, err.value.code) == (429, "rate_limited")
    assert err.value.retry_after is not None and err.value.retry_after >= 1
    assert [m["content"] for m in (await bob.messages(first["chat_id"]))["messages"]] == [
        "over rest"
    ]


async def test_failed_logins_are_limited_per_username_and_address(base_url, user):
    alice = await user()
    async with ChatdClient(base_url) as client:
        for _ in range(3):
            with pytest.raises(ApiError) as err:
                await client.login(alice.username, "wrong password")
            assert (err.value.status, err.value.code) == (401, "unauthorized")
        with pytest.raises(ApiError) as err:
            await client.login(alice.username, PASSWORD)
        assert (err.value.status, err.value.code) == (429, "rate_limited")
        assert err.value.retry_after is not None


async def test_websocket_origin_allow_list(user):
    alice = await user()
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with raw_ws(alice, origin="https://evil.test"):
            pass
    assert err.value.status == 403
    async with raw_ws(alice, origin="https://chat.example.org") as ws:
        assert (await ws.receive_json())["type"] == "hello"
    async with raw_ws(alice, f"?token={alice.token}", auth=False) as ws:
        assert (await ws.receive_json())["type"] == "hello"  # browsers pass ?token=
