"""Contacts: the people whose presence a user follows."""

from __future__ import annotations

from typing import Any

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.errors import bad_request, not_found
from chatd.core.ids import now_ms
from chatd.core.models import Contact, User
from chatd.core.ports.storage import Storage

MAX_CONTACTS = 5000


class ContactService:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def list(self, caller: Caller) -> list[tuple[Contact, User | None]]:
        contacts = await self._storage.contacts.list_for_user(caller.user_id)
        return [(c, await self._storage.users.get(c.contact_id)) for c in contacts]

    async def put(self, caller: Caller, contact_id: str, data: Any) -> tuple[Contact, User]:
        data = validate.body(data if data is not None else {})
        name = validate.string(data, "name", required=False, max_len=64)
        if contact_id == caller.user_id:
            raise bad_request("you cannot add yourself as a contact")
        user = await self._storage.users.get(contact_id)
        if user is None:
            raise not_found("user not found")
        existing = await self._storage.contacts.list_for_user(caller.user_id)
        previous = next((c for c in existing if c.contact_id == contact_id), None)
        if previous is None and len(existing) >= MAX_CONTACTS:
            raise bad_request(f"at most {MAX_CONTACTS} contacts")
        added = previous.created_at if previous else now_ms()
        contact = Contact(caller.user_id, contact_id, name, added)
        await self._storage.contacts.put(contact)
        return contact, user

    async def delete(self, caller: Caller, contact_id: str) -> None:
        if not await self._storage.contacts.delete(caller.user_id, contact_id):
            raise not_found("contact not found")
