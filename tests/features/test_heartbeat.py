"""Heartbeats: the hello announces the interval; a silent connection is closed."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import raw_ws


@pytest.fixture
def config_overrides():
    return {"server": {"heartbeat_s": 0.3}}


async def test_hello_then_silent_connection_is_closed_with_1001(user):
    alice = await user()
    clock = asyncio.get_running_loop().time
    # Timed from before the upgrade: the server's silence clock cannot start earlier.
    started = clock()
    async with raw_ws(alice) as ws:
        hello = await ws.receive_json()
        assert hello["type"] == "hello"
        data = hello["data"]
        assert data["user_id"] == alice.user_id and data["device_id"] == alice.device_id
        assert data["heartbeat_s"] == 0.3 and data["node_id"] and data["server_time"]
        msg = await ws.receive(timeout=30)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert (msg.data, ws.close_code) == (1001, 1001)
        assert clock() - started >= 3 * 0.3  # three silent intervals, never fewer


async def test_pinging_client_stays_connected(user):
    alice = await user()
    async with alice.connect(reconnect=False, ping_interval=0.1) as ws:
        await asyncio.sleep(1.5)
        assert not ws.closed
        assert "server_time" in await ws.ping()
