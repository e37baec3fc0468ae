"""Fixtures for the admin console's tests: a signed-in admin, a canned server, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from admin_tui.api import AdminApi
from admin_tui.app import AdminApp
from admin_tui.start import sign_in
from tests.conftest import PASSWORD, services_of
from tests.tui.canned_server import canned_app


@pytest.fixture
async def admin_token(server: Any, base_url: str) -> str:
    """The token of ``root``, a server admin, logged in as the console does."""
    await services_of(server).accounts.create_user("root", PASSWORD, is_admin=True)
    return await sign_in(base_url, "root", PASSWORD)


@pytest.fixture
async def admin_api(base_url: str, admin_token: str) -> Any:
    api = AdminApi(base_url, admin_token)
    yield api
    await api.aclose()


def console(base_url: str, token: str) -> AdminApp:
    """The admin console on ``base_url`` (polling, where it must poll, five times a second)."""
    return AdminApp(AdminApi(base_url, token), poll_s=0.2)


def notes(app: AdminApp) -> list[str]:
    """The notifications on screen (what an admin reads after an action)."""
    return [n.message for n in app._notifications]


async def settle(pilot: Any, ready: Callable[[], Any], timeout: float = 10.0) -> None:
    """Let the app run until ``ready()`` is true (data arrived, a screen opened)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ready():
        if loop.time() > deadline:
            raise AssertionError(f"not ready after {timeout}s: {ready}")
        await pilot.pause(0.05)


@contextlib.contextmanager
def canned_server(**routes: bool) -> Iterator[str]:
    """The canned server (``tests.tui.canned_server``) on its own thread and loop, so a
    snapshot's ``App.run`` (which makes its own loop) can reach it; yields its URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(canned_app(**routes))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["runner"] = runner
        box["port"] = runner.addresses[0][1]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{box['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
