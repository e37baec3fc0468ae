"""The embedded default store: one SQLite file in WAL mode, written with group commit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chatd.plugins import PluginContext
from chatd.storage.sqlite.audit import SqliteAudit
from chatd.storage.sqlite.chats import SqliteChats
from chatd.storage.sqlite.contacts import SqliteContacts
from chatd.storage.sqlite.db import Database, Observer
from chatd.storage.sqlite.devices import SqliteDevices
from chatd.storage.sqlite.invites import SqliteInvites
from chatd.storage.sqlite.keys import SqliteKeys
from chatd.storage.sqlite.media import SqliteMedia
from chatd.storage.sqlite.messages import SqliteMessages
from chatd.storage.sqlite.push import SqlitePush
from chatd.storage.sqlite.receipts import SqliteReceipts
from chatd.storage.sqlite.settings import SqliteSettings
from chatd.storage.sqlite.stats import SqliteStats
from chatd.storage.sqlite.users import SqliteUsers


class SqliteStorage:
    """``Storage`` on ``<data_dir>/chatd.sqlite3``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        synchronous: str = "FULL",
        observe: Observer | None = None,
    ) -> None:
        self.db = Database(data_dir / "chatd.sqlite3", synchronous=synchronous, observe=observe)
        self.users = SqliteUsers(self.db)
        self.devices = SqliteDevices(self.db)
        self.contacts = SqliteContacts(self.db)
        self.invites = SqliteInvites(self.db)
        self.chats = SqliteChats(self.db)
        self.messages = SqliteMessages(self.db)
        self.receipts = SqliteReceipts(self.db)
        self.media = SqliteMedia(self.db)
        self.keys = SqliteKeys(self.db)
        self.push = SqlitePush(self.db)
        self.audit = SqliteAudit(self.db)
        self.stats = SqliteStats(self.db)

    async def open(self) -> None:
        await self.db.open()

    async def aclose(self) -> None:
        await self.db.aclose()

    async def ping(self) -> bool:
        try:
            return await self.db.writable() and await self.db.fetchone("SELECT 1") is not None
        except Exception:
            return False


def create(settings: Mapping[str, Any], context: PluginContext) -> SqliteStorage:
    """The ``chatd.storage`` entry point ``sqlite``: a store in ``<data_dir>/chatd.sqlite3``."""
    checked = SqliteSettings.read(settings, context)
    return SqliteStorage(context.data_dir, synchronous=checked.synchronous, observe=context.observe)
