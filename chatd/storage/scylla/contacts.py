"""Contacts on ScyllaDB: the list by owner and its reverse (watchers) by contact."""

from __future__ import annotations

from chatd.core.models import Contact
from chatd.storage.scylla.bridge import Cql

CQL = {
    "contacts.created": "SELECT created_at FROM contacts WHERE user_id = ? AND contact_id = ?",
    "contacts.put": "UPDATE contacts SET name = ?, created_at = ? "
    "WHERE user_id = ? AND contact_id = ?",
    "contacts.put_watcher": "INSERT INTO contact_watchers (contact_id, user_id) VALUES (?, ?)",
    "contacts.delete": "DELETE FROM contacts WHERE user_id = ? AND contact_id = ?",
    "contacts.delete_watcher": "DELETE FROM contact_watchers WHERE contact_id = ? AND user_id = ?",
    "contacts.of_user": "SELECT user_id, contact_id, name, created_at FROM contacts "
    "WHERE user_id = ?",
    "contacts.watchers": "SELECT user_id FROM contact_watchers WHERE contact_id = ?",
}


class ScyllaContacts:
    """Both directions are written by one logged batch, so they never disagree."""

    def __init__(self, cql: Cql) -> None:
        self._cql = cql

    async def put(self, contact: Contact) -> None:
        c = contact
        async with self._cql.gate.held():
            row = await self._cql.one("contacts.created", (c.user_id, c.contact_id))
            created = int(row.created_at) if row is not None else c.created_at  # keep the first
            batch = self._cql.batch(
                [
                    ("contacts.put", (c.name, created, c.user_id, c.contact_id)),
                    ("contacts.put_watcher", (c.contact_id, c.user_id)),
                ],
                logged=True,
            )
            await self._cql.write(batch)

    async def delete(self, user_id: str, contact_id: str) -> bool:
        async with self._cql.gate.held():
            row = await self._cql.one("contacts.created", (user_id, contact_id))
            batch = self._cql.batch(
                [
                    ("contacts.delete", (user_id, contact_id)),
                    ("contacts.delete_watcher", (contact_id, user_id)),
                ],
                logged=True,
            )
            await self._cql.write(batch)
            return row is not None

    async def list_for_user(self, user_id: str) -> list[Contact]:
        rows = await self._cql.all_rows("contacts.of_user", (user_id,))
        contacts = [Contact(r.user_id, r.contact_id, r.name, int(r.created_at)) for r in rows]
        return sorted(contacts, key=lambda c: (c.created_at, c.contact_id))

    async def watchers(self, contact_id: str) -> list[str]:
        rows = await self._cql.all_rows("contacts.watchers", (contact_id,))
        return [r.user_id for r in rows]
