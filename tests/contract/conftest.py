"""Storage contract suite: the same cases against every storage backend.

Select backends with ``pytest --storage sqlite,scylla`` (default ``sqlite``). Every
test that uses the ``storage`` (or ``backend``) fixture runs once per backend. Tests
talk to the ``chatd.core.ports.storage.Storage`` protocol only, never to SQL or CQL,
so a new backend passes this suite unchanged or has a bug.

To add a backend, write one async context manager ``factory(tmp_path)`` that sets up
an empty, isolated store (a fresh file, a fresh keyspace...), yields a zero-argument
callable building an *unopened* ``Storage`` on it (called again to reopen the same
data after a restart), and tears the store down afterwards; then list it in
``BACKENDS``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from chatd.core.ids import new_id, new_token, now_ms
from chatd.core.ids import token_hash as hash_token
from chatd.core.models import Chat, Device, Message, MessageDraft, User
from chatd.core.ports.storage import Storage
from tests.conftest import selected_storages
from tests.scylla_server import scylla_server

StorageBuilder = Callable[[], Storage]
BackendFactory = Callable[[Path], AbstractAsyncContextManager[StorageBuilder]]


# -- backends ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[StorageBuilder]:
    """A fresh real SQLite file (WAL, group commit) under the test's tmp_path."""
    from chatd.storage.sqlite import SqliteStorage

    data_dir = tmp_path / "sqlite"
    yield lambda: SqliteStorage(data_dir)


@contextlib.asynccontextmanager
async def scylla_backend(tmp_path: Path) -> AsyncIterator[StorageBuilder]:
    """The session keyspace on a real ScyllaDB/Cassandra, emptied for this test."""
    from chatd.storage.scylla import ScyllaStorage

    server = scylla_server()
    await server.ready()
    yield lambda: ScyllaStorage(tmp_path / "scylla", **server.options())


BACKENDS: dict[str, BackendFactory] = {
    "sqlite": sqlite_backend,
    "scylla": scylla_backend,
}


def selected_backends(config: pytest.Config) -> list[str]:
    return selected_storages(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        names = selected_backends(metafunc.config)
        metafunc.parametrize("backend", names, indirect=True, ids=names)


class Backend:
    """One isolated store of one backend; opens ``Storage`` objects on it."""

    def __init__(self, name: str, build: StorageBuilder) -> None:
        self.name = name
        self._build = build
        self._open: list[Storage] = []

    async def open(self) -> Storage:
        """A new, opened ``Storage`` on this store's data (a process restart)."""
        storage = self._build()
        await storage.open()
        self._open.append(storage)
        return storage

    async def close(self, storage: Storage) -> None:
        self._open.remove(storage)
        await storage.aclose()

    async def close_all(self) -> None:
        while self._open:
            await self.close(self._open[-1])


@pytest.fixture
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    name: str = request.param
    async with BACKENDS[name](tmp_path) as build:
        b = Backend(name, build)
        try:
            yield b
        finally:
            await b.close_all()


@pytest.fixture
async def storage(backend: Backend) -> Storage:
    """An opened, empty ``Storage``; closed when the test ends."""
    return await backend.open()


@pytest.fixture
async def second_node(backend: Backend, storage: Storage) -> Storage:
    """Another ``Storage`` on the same data, open at the same time: a second chatd node."""
    return await backend.open()


# -- builders -----------------------------------------------------------------
# Factory fixtures bound to ``storage``: ``alice = await make_user("alice")``.

_seq = itertools.count(1)


def user_record(username: str | None = None, **fields: object) -> User:
    name = username or f"user{next(_seq)}"
    values: dict[str, object] = {
        "user_id": new_id(),
        "username": name,
        "display_name": name.title(),
        "password_hash": f"hash-of-{name}",
        "created_at": now_ms(),
    }
    values.update(fields)
    return User(**values)  # type: ignore[arg-type]


@pytest.fixture
def make_user(storage: Storage) -> Callable[..., Awaitable[User]]:
    """``await make_user("alice", is_admin=True)``: a stored user."""

    async def make(username: str | None = None, **fields: object) -> User:
        user = user_record(username, **fields)
        await storage.users.create(user)
        return user

    return make


@pytest.fixture
def make_device(storage: Storage) -> Callable[..., Awaitable[Device]]:
    """``await make_device(alice, token_hash="th-1")``: a stored, live device of a user."""

    async def make(
        user: User, name: str = "phone", *, token_hash: str | None = None, ttl_ms: int = 86_400_000
    ) -> Device:
        now = now_ms()
        device = Device(
            device_id=new_id(),
            user_id=user.user_id,
            name=name,
            created_at=now,
            expires_at=now + ttl_ms,
        )
        await storage.devices.create(device, token_hash or hash_token(new_token()))
        return device

    return make


def chat_record(created_by: str | None = None) -> Chat:
    now = now_ms()
    return Chat(
        chat_id=new_id(), kind="direct", created_at=now, created_by=created_by, last_activity=now
    )


@pytest.fixture
def make_direct(storage: Storage) -> Callable[[User, User], Awaitable[Chat]]:
    """``await make_direct(alice, bob)``: their direct chat (both are members)."""

    async def make(a: User, b: User) -> Chat:
        return await storage.chats.get_or_create_direct(
            chat_record(a.user_id), a.user_id, b.user_id
        )

    return make


def device_id_of(sender: User, device: Device | str | None) -> str:
    if isinstance(device, Device):
        return device.device_id
    return device or f"device-of-{sender.user_id}"


@pytest.fixture
def draft() -> Callable[..., MessageDraft]:
    """``draft(chat, alice, client_msg_id="c1")``: a ``MessageDraft`` (not stored)."""

    def make(
        chat: Chat | str,
        sender: User,
        *,
        device: Device | str | None = None,
        content: str | None = None,
        client_msg_id: str | None = None,
        **fields: object,
    ) -> MessageDraft:
        cmid = client_msg_id or new_id()
        return MessageDraft(
            chat_id=chat if isinstance(chat, str) else chat.chat_id,
            sender_id=sender.user_id,
            sender_device_id=device_id_of(sender, device),
            type=str(fields.pop("type", "text")),
            content=content if content is not None else f"message {cmid}",
            client_msg_id=cmid,
            **fields,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture
def send(storage: Storage, draft: Callable[..., MessageDraft]) -> Callable[..., Awaitable[Message]]:
    """``await send(chat, alice, device=phone)``: append a new message, return it."""

    async def make(chat: Chat | str, sender: User, **kwargs: object) -> Message:
        appended = await storage.messages.append(draft(chat, sender, **kwargs))
        assert appended.created
        return appended.message

    return make
