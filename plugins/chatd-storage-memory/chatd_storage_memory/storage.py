"""``MemoryStorage``: the storage port on in-process tables shared by name."""

from __future__ import annotations

from chatd.core.errors import ChatdError
from chatd_storage_memory import stores
from chatd_storage_memory.data import Tables

#: Every store's tables in this process, by name: they outlive a close, so a
#: "restart" inside one process finds its data again (and a second "node" shares it).
_SPACES: dict[str, Tables] = {}


def space(name: str) -> Tables:
    """The tables called ``name``, made empty the first time."""
    return _SPACES.setdefault(name, Tables())


class MemoryStorage:
    """``Storage`` on one set of in-memory tables; refuses every call unless open."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._open = False
        self.users = stores.Users(self)
        self.devices = stores.Devices(self)
        self.contacts = stores.Contacts(self)
        self.invites = stores.Invites(self)
        self.chats = stores.Chats(self)
        self.messages = stores.Messages(self)
        self.receipts = stores.Receipts(self)
        self.media = stores.MediaRecords(self)
        self.keys = stores.Keys(self)
        self.push = stores.Push(self)
        self.audit = stores.Audit(self)
        self.stats = stores.Stats(self)

    def tables(self) -> Tables:
        """The tables, or ``unavailable`` before ``open`` and after ``aclose``."""
        if not self._open:
            raise ChatdError("unavailable", "storage is closed")
        return self._tables

    async def open(self) -> None:
        self._open = True

    async def aclose(self) -> None:
        # Every write finished when its call returned: nothing is pending.
        self._open = False

    async def ping(self) -> bool:
        return self._open
