"""The storage conformance kit's machinery: factories, stores and fixtures.

``conftest.py`` beside the cases turns this into the kit's pytest plugin; a test
directory that wants the builders below (``make_user``, ``send``...) for cases
of its own imports them from here.

A *storage factory* is what a ``chatd.storage`` entry point names: a callable
``create(settings, context)`` returning an unopened ``Storage``. The kit calls
it with empty ``settings`` and a ``PluginContext`` whose ``data_dir`` is a new,
empty directory for every test, so a factory must give an empty store for a new
``data_dir``, and Storage objects built with the same ``data_dir`` must share
their data: the kit builds a second one to play a second chatd node, and closes
and builds again to play a restart.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chatd.core.ids import new_id, new_token, now_ms
from chatd.core.ids import token_hash as hash_token
from chatd.core.models import Chat, Device, Message, MessageDraft, User
from chatd.core.ports.storage import Storage
from chatd.plugins import PluginContext
from chatd.testing.storage.plugin import OPTION

StorageFactory = Callable[[Mapping[str, Any], PluginContext], Storage]


# -- factories ------------------------------------------------------------------


def factory_names(config: pytest.Config) -> list[str]:
    """The ``MODULE:NAME`` specs given with ``--storage-factory`` (comma-separated)."""
    raw = str(config.getoption(OPTION) or "")
    specs = list(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
    if not specs:
        raise pytest.UsageError(
            f"the storage conformance kit needs {OPTION}=MODULE:NAME, naming your plugin's "
            "factory create(settings, context) (e.g. my_plugin:create)"
        )
    for spec in specs:
        module, sep, name = spec.partition(":")
        if not (module and sep and name):
            raise pytest.UsageError(f"{OPTION}: {spec!r} is not MODULE:NAME")
    return specs


def factory_id(spec: str) -> str:
    """A short test id: the factory's name, or its module's when the name is ``create``
    (``chatd.storage.sqlite:create`` -> ``sqlite``)."""
    module, _, name = spec.partition(":")
    return module.rsplit(".", 1)[-1] if name == "create" else name


def load_factory(spec: str) -> StorageFactory:
    module, _, name = spec.partition(":")
    factory: StorageFactory = getattr(importlib.import_module(module), name)
    return factory


def _no_metrics(operation: str, seconds: float) -> None:
    """The kit collects no metrics; a plugin may still report them."""


class Backend:
    """One empty, isolated store of one factory; opens ``Storage`` objects on it."""

    def __init__(self, name: str, factory: StorageFactory, data_dir: Path) -> None:
        self.name = name
        self._factory = factory
        self._data_dir = data_dir
        self._open: list[Storage] = []
        self._built = itertools.count(1)

    async def open(self) -> Storage:
        """A new, opened ``Storage`` on this store's data (another node, or a restart)."""
        context = PluginContext(
            section=f"storage.{self.name}",
            data_dir=self._data_dir,
            node_id=f"kit-node-{next(self._built)}",
            observe=_no_metrics,
        )
        storage = self._factory({}, context)
        await storage.open()
        self._open.append(storage)
        return storage

    async def close(self, storage: Storage) -> None:
        self._open.remove(storage)
        await storage.aclose()

    async def close_all(self) -> None:
        while self._open:
            await self.close(self._open[-1])


def parametrize_backend(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses ``backend`` (or ``storage``) once per factory."""
    if "backend" in metafunc.fixturenames:
        specs = factory_names(metafunc.config)
        metafunc.parametrize("backend", specs, indirect=True, ids=[factory_id(s) for s in specs])


@pytest_asyncio.fixture
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    spec: str = request.param
    data_dir = tmp_path / "store"
    data_dir.mkdir()
    b = Backend(factory_id(spec), load_factory(spec), data_dir)
    try:
        yield b
    finally:
        await b.close_all()


@pytest_asyncio.fixture
async def storage(backend: Backend) -> Storage:
    """An opened, empty ``Storage``; closed when the test ends."""
    return await backend.open()


@pytest_asyncio.fixture
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
