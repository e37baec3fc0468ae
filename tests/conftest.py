"""Shared fixtures: a real chatd app on real storage, and logged-in clients.

``--storage sqlite,scylla`` names the backends (the option is defined in the
repository's conftest.py): the storage conformance kit runs once per backend,
and so does every feature test that uses the in-process ``server``
(a real SQLite file, or the session keyspace on ``CHATD_TEST_SCYLLA`` emptied
first). Tests that reach into the SQLite files themselves are marked
``sqlite_only``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatd.app import build_app
from chatd.client import ChatdClient
from chatd.config import Config, from_dict
from chatd.gateway.context import SERVICES, Services
from tests.scylla_server import drop_session_keyspace, scylla_server
from tests.webhook_receiver import SECRET, WebhookReceiver

PASSWORD = "correct horse battery"
# Argon2id stays on, with small costs so hundreds of test logins stay fast.
FAST_AUTH = {"argon2_time_cost": 1, "argon2_memory_kib": 256, "argon2_parallelism": 1}
# Tests register, log in and make groups far faster than people do, all from
# 127.0.0.1; a test of a limit sets it back in its own overrides.
RELAXED_LIMITS = {
    "messages_per_second": 10_000,
    "login_attempts_per_minute": 10_000,
    "login_attempts_per_address_per_minute": 100_000,
    "login_attempts_per_username_per_minute": 100_000,
    "registrations_per_address_per_hour": 0,
    "password_hash_queue": 10_000,
    "groups_created_per_hour": 0,
    "group_changes_per_minute": 0,
    "key_claims_per_device_per_hour": 0,
}
_names = itertools.count(1)


STORAGES = ("sqlite", "scylla")
#: The storage kit's factory for each backend (``--storage-factory``).
KIT_FACTORIES = {
    "sqlite": "chatd.storage.sqlite:create",
    "scylla": "tests.scylla_server:scylla",
}


def selected_storages(config: pytest.Config) -> list[str]:
    raw = str(config.getoption("--storage") or "sqlite")
    names = list(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    unknown = [n for n in names if n not in STORAGES]
    if unknown or not names:
        raise pytest.UsageError(
            f"--storage: unknown backend(s) {unknown or raw!r}; known: {', '.join(STORAGES)}"
        )
    return names


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: the test reaches into SQLite files; not run on other backends"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not {"server", "chatd_process", "server_overrides"} & set(metafunc.fixturenames):
        return
    names = selected_storages(metafunc.config)
    if metafunc.definition.get_closest_marker("sqlite_only"):
        names = ["sqlite"]
    metafunc.parametrize("server_storage", names, ids=names, scope="function")


@pytest.fixture(scope="session", autouse=True)
def _drop_scylla_keyspace() -> Iterator[None]:
    yield
    drop_session_keyspace()


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def base_config(data_dir: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tests' server configuration (as a TOML file would hold it) plus ``overrides``."""
    raw = {
        "server": {"data_dir": str(data_dir)},
        "auth": dict(FAST_AUTH),
        "limits": dict(RELAXED_LIMITS),
    }
    return merge(raw, overrides or {})


def test_config(data_dir: Path, overrides: dict[str, Any] | None = None) -> Config:
    return from_dict(base_config(data_dir, overrides))


test_config.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    """Override in a test module to change the server's configuration."""
    return {}


@pytest.fixture
async def server_overrides(config_overrides: dict[str, Any], server_storage: str) -> dict[str, Any]:
    """``config_overrides`` plus the storage of this run (ScyllaDB: emptied first)."""
    if server_storage != "scylla":
        return config_overrides
    cassandra = scylla_server()
    await cassandra.ready()
    where = {"contact_points": [cassandra.host], "port": cassandra.port}
    where["keyspace"] = cassandra.keyspace
    return merge({"storage": {"backend": "scylla", "scylla": where}}, config_overrides)


@pytest.fixture
async def server(aiohttp_server: Any, tmp_path: Path, server_overrides: dict[str, Any]) -> Any:
    return await aiohttp_server(build_app(test_config(tmp_path / "data", server_overrides)))


@pytest.fixture
def base_url(server: Any) -> str:
    return str(server.make_url("")).rstrip("/")


def services_of(server: Any) -> Services:
    """The services of a test server (an aiohttp ``TestServer``), for tests that stage
    or inspect what no API shows."""
    return server.app[SERVICES]


@pytest.fixture
def services(server: Any) -> Services:
    """The in-process ``server``'s services (``services_of(server)``)."""
    return services_of(server)


UserFactory = Callable[..., Awaitable[ChatdClient]]


@pytest.fixture
async def user(base_url: str) -> AsyncIterator[UserFactory]:
    """``await user("alice")``: a registered, logged-in client; ``login_again=`` adds a device."""
    async with signed_in_clients(base_url) as make:
        yield make


@contextlib.asynccontextmanager
async def signed_in_clients(
    url: str, before: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[UserFactory]:
    """A factory of registered, logged-in clients of ``url``, closed on exit; ``before``
    runs ahead of each (starting a server process the first time, say)."""
    clients: list[ChatdClient] = []

    async def make(name: str | None = None, *, register: bool = True) -> ChatdClient:
        if before is not None:
            await before()
        username = name or f"user{next(_names)}"
        client = ChatdClient(url)
        clients.append(client)
        if register:
            await client.register(username, PASSWORD)
        await client.login(username, PASSWORD)
        client.username = username  # type: ignore[attr-defined]
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def device(base_url: str) -> AsyncIterator[Callable[[ChatdClient], Awaitable[ChatdClient]]]:
    """``await device(alice)``: another logged-in device of the same user."""
    clients: list[ChatdClient] = []

    async def make(of: ChatdClient) -> ChatdClient:
        client = ChatdClient(base_url)
        clients.append(client)
        await client.login(of.username, PASSWORD)  # type: ignore[attr-defined]
        client.username = of.username  # type: ignore[attr-defined]
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def chatd_process(tmp_path: Path, server_overrides: dict[str, Any]) -> AsyncIterator[Any]:
    """A real ``chatd serve`` child process, not started yet (crash, signal, restart
    tests); on each ``--storage`` backend, as the in-process ``server`` is."""
    from tests.subprocess_server import ServerProcess

    server = ServerProcess(tmp_path / "data", server_overrides)
    yield server
    server.stop()


@pytest.fixture
async def process_user(chatd_process: Any) -> AsyncIterator[UserFactory]:
    """``await process_user("alice")``: registered and logged in on ``chatd_process``
    (started first if it is not running); closed when the test ends."""

    async def started() -> None:
        if chatd_process.proc is None:
            await chatd_process.start()

    async with signed_in_clients(chatd_process.url, started) as make:
        yield make


@contextlib.asynccontextmanager
async def raw_ws(
    client: ChatdClient, query: str = "", *, auth: bool = True, **options: Any
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A bare WebSocket of ``client``'s device, without the client library on it: for
    frames the library never sends and for the socket's own behaviour (close codes).
    ``auth=False`` leaves the Authorization header out; ``options`` go to ``ws_connect``."""
    headers = {"Authorization": f"Bearer {client.token}"} if auth else {}
    url = client.base_url + "/ws" + query
    async with client._http().ws_connect(url, headers=headers, **options) as ws:
        yield ws


async def before_sentinel(ws: Any, sender: ChatdClient, **to: str) -> list[dict[str, Any]]:
    """The new_message data ``ws`` receives before a sentinel ``sender`` sends it (``to``:
    ``chat_id=`` or ``recipient_id=``): the barrier for "nothing more arrives".

    Two sentinels, the second sent once the first arrived: by then any replay for
    ``ws`` has fixed what it covers, so the second is live, and live messages wait
    for the replay to end. So whatever the replay or an earlier publish was going
    to send has arrived before it, in whichever chat.
    """
    before: list[dict[str, Any]] = []
    for n in (1, 2):
        sent = await sender.send_message(**to, content=f"sentinel {n}")
        while True:
            data = (await ws.next_event("new_message", timeout=15))["data"]
            if data["message_id"] == sent["message_id"]:
                break
            before.append(data)
    return before


def fast_push(hook: WebhookReceiver, max_attempts: int = 3) -> dict[str, Any]:
    """``config_overrides`` for push tests: the webhook provider to ``hook``, with
    retries and polling fast enough for a test to watch them."""
    return {
        "push": {
            "retry_base_ms": 100,
            "max_attempts": max_attempts,
            "poll_interval_ms": 50,
            "timeout_ms": 1000,
            "webhook": {"url": hook.url, "secret": SECRET},
        }
    }


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    """A local webhook push receiver that checks signatures (push tests)."""
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()  # also ends requests it was told to hang
