"""Groups: creation, settings, membership and roles, each recorded as a system message.

A group is a chat with more members and admins: messages, receipts, sync and
typing take the same path as in a direct chat. Every change is computed here from
the group as read, then applied by the store only if the group's version did not
move meanwhile (compare-and-set), so two admins acting at once can never push a
group past its size limit or leave it without an admin; the loser re-reads and
tries again.

A group can also be used against people: anyone could be added to thousands of
groups. So a user's ``group_add`` setting says who may add them ("contacts":
only users they have as a contact; anyone else makes the whole request fail
with ``forbidden``), and creating groups and changing them as an admin are
rate limited per user. Leaving a group never is.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.errors import ChatdError, StaleVersion, bad_request, forbidden, not_found
from chatd.core.ids import new_id, now_ms
from chatd.core.models import SYSTEM, Chat, GroupChange, Member, MessageDraft, Role, User
from chatd.core.ports.owners import Owners
from chatd.core.ports.storage import Storage
from chatd.core.ratelimit import TokenBucket
from chatd.core.services.chats import ChatService
from chatd.core.services.fanout import FanOut
from chatd.core.views import group_view

MAX_NAME = 100
MAX_DESCRIPTION = 1000
RETRIES = 16


def system_draft(
    chat_id: str, caller: Caller, event: str, user_ids: list[str], **extra: Any
) -> MessageDraft:
    content = json.dumps(
        {"event": event, "actor_id": caller.user_id, "user_ids": user_ids, **extra},
        separators=(",", ":"),
    )
    return MessageDraft(
        chat_id=chat_id,
        sender_id=caller.user_id,
        sender_device_id=caller.device_id,
        type=SYSTEM,
        content=content,
        client_msg_id=f"system:{new_id()}",
    )


Plan = Callable[[Chat, list[Member]], GroupChange | None]


class GroupService:
    def __init__(
        self,
        storage: Storage,
        chats: ChatService,
        fanout: FanOut,
        *,
        max_members: int = 256,
        creations_per_hour: float = 30,
        changes_per_minute: float = 60,
        owners: Owners | None = None,
    ) -> None:
        self._storage = storage
        self._chats = chats
        self._fanout = fanout
        self.max_members = max_members
        self._creations = TokenBucket.per_period(creations_per_hour, 3600, what="groups created")
        self._changes = TokenBucket.per_period(changes_per_minute, 60, what="group changes")
        self._owners = owners
        if owners is not None:
            owners.serve("group", self._serve)

    # -- reads ----------------------------------------------------------------

    async def get(self, caller: Caller, group_id: str) -> dict[str, Any]:
        chat, members = await self._current(caller, group_id)
        return group_view(chat, members, self.max_members)

    async def describe(self, group_id: str) -> dict[str, Any]:
        """A group as an administrator sees it (no membership needed)."""
        chat = await self._storage.chats.get(group_id)
        if chat is None or chat.kind != "group":
            raise not_found("group not found")
        return group_view(chat, await self._storage.chats.members(group_id), self.max_members)

    async def list_all(self) -> list[dict[str, Any]]:
        ids: list[str] = []
        while page := await self._storage.chats.group_ids(500, ids[-1] if ids else ""):
            ids.extend(page)
        return [await self.describe(group_id) for group_id in ids]

    # -- changes --------------------------------------------------------------

    async def create(self, caller: Caller, data: Any) -> dict[str, Any]:
        chat_id = new_id()
        if self._elsewhere(chat_id):  # its first message is numbered by its owner
            return await self._forward(caller, "create", chat_id, data)
        return await self._create_here(caller, data, chat_id)

    async def _create_here(self, caller: Caller, data: Any, chat_id: str) -> dict[str, Any]:
        data = validate.body(data)
        name = validate.required_string(data, "name", max_len=MAX_NAME)
        description = validate.string(data, "description", required=False, max_len=MAX_DESCRIPTION)
        member_ids = self._user_ids(data, "member_ids", allow_empty=True)
        invited = [u for u in dict.fromkeys(member_ids) if u != caller.user_id]
        if 1 + len(invited) > self.max_members:
            raise ChatdError("conflict", f"a group holds at most {self.max_members} members")
        await self._require_addable(caller, invited)
        self._creations.take(caller.user_id)
        now = now_ms()
        chat = Chat(
            chat_id=chat_id,
            kind="group",
            created_at=now,
            title=name,
            description=description,
            created_by=caller.user_id,
        )
        members = [Member(chat.chat_id, caller.user_id, "admin", now)] + [
            Member(chat.chat_id, user_id, "member", now) for user_id in invited
        ]
        system = system_draft(chat.chat_id, caller, "created", invited, name=name)
        ticket = self._fanout.begin(chat.chat_id)
        try:
            message = await self._storage.chats.create_group(chat, members, system)
            self._fanout.message(ticket, message, recipients=[m.user_id for m in members])
        finally:
            self._fanout.abandon(ticket)  # no-op once the message joined the line
        return await self.describe(chat.chat_id)

    async def update(self, caller: Caller, group_id: str, data: Any) -> dict[str, Any]:
        if self._elsewhere(group_id):
            return await self._forward(caller, "update", group_id, data)
        return await self._update_here(caller, group_id, data)

    async def _update_here(self, caller: Caller, group_id: str, data: Any) -> dict[str, Any]:
        data = validate.body(data)
        unknown = set(data) - {"name", "description", "avatar_media_id"}
        if unknown:
            raise bad_request(f"unknown field: {sorted(unknown)[0]}")
        settings: dict[str, str | None] = {}
        if "name" in data:
            settings["title"] = validate.required_string(data, "name", max_len=MAX_NAME)
        if "description" in data:
            settings["description"] = validate.string(
                data, "description", allow_none=True, max_len=MAX_DESCRIPTION
            )
        if data.get("avatar_media_id") is not None:
            raise not_found("avatar_media_id: unknown media")
        if "avatar_media_id" in data:
            settings["avatar_media_id"] = None
        self._changes.take(caller.user_id)

        def plan(chat: Chat, members: list[Member]) -> GroupChange | None:
            self._require_admin(caller, members)
            current = {
                "title": chat.title,
                "description": chat.description,
                "avatar_media_id": chat.avatar_media_id,
            }
            changed = {k: v for k, v in settings.items() if current[k] != v}
            if not changed:
                return None
            shown = {"name" if k == "title" else k: v for k, v in changed.items()}
            return GroupChange(
                chat.chat_id,
                chat.version,
                system_draft(chat.chat_id, caller, "updated", [], changes=shown),
                settings=tuple(changed.items()),
            )

        return await self._change(caller, group_id, plan)

    async def add_members(self, caller: Caller, group_id: str, data: Any) -> dict[str, Any]:
        if self._elsewhere(group_id):
            return await self._forward(caller, "add_members", group_id, data)
        return await self._add_members_here(caller, group_id, data)

    async def _add_members_here(self, caller: Caller, group_id: str, data: Any) -> dict[str, Any]:
        user_ids = list(dict.fromkeys(self._user_ids(validate.body(data), "user_ids")))
        await self._require_addable(caller, [u for u in user_ids if u != caller.user_id])
        self._changes.take(caller.user_id)

        def plan(chat: Chat, members: list[Member]) -> GroupChange | None:
            self._require_admin(caller, members)
            current = {m.user_id for m in members}
            new = [u for u in user_ids if u not in current]
            if not new:
                return None
            if len(current) + len(new) > self.max_members:
                raise ChatdError(
                    "conflict",
                    f"a group holds at most {self.max_members} members "
                    f"({len(current)} now, {len(new)} to add)",
                )
            return GroupChange(
                chat.chat_id,
                chat.version,
                system_draft(chat.chat_id, caller, "added", new),
                add=tuple(new),
            )

        return await self._change(caller, group_id, plan)

    async def remove_member(self, caller: Caller, group_id: str, user_id: str) -> dict[str, Any]:
        if self._elsewhere(group_id):
            return await self._forward(caller, "remove_member", group_id, user_id)
        return await self._remove_member_here(caller, group_id, user_id)

    async def _remove_member_here(
        self, caller: Caller, group_id: str, user_id: str
    ) -> dict[str, Any]:
        if user_id != caller.user_id:  # leaving is never held back
            self._changes.take(caller.user_id)

        def plan(chat: Chat, members: list[Member]) -> GroupChange | None:
            leaving = user_id == caller.user_id
            if not leaving:
                self._require_admin(caller, members)
            target = next((m for m in members if m.user_id == user_id), None)
            if target is None:
                raise not_found("not a member of this group")
            rest = [m for m in members if m.user_id != user_id]
            promote: tuple[tuple[str, Role], ...] = ()
            if rest and not any(m.role == "admin" for m in rest):
                promote = ((rest[0].user_id, "admin"),)  # the longest-standing member
            extra = {"promoted": [promote[0][0]]} if promote else {}
            draft = system_draft(
                chat.chat_id, caller, "left" if leaving else "removed", [user_id], **extra
            )
            return GroupChange(chat.chat_id, chat.version, draft, remove=(user_id,), roles=promote)

        return await self._change(caller, group_id, plan)

    async def set_role(
        self, caller: Caller, group_id: str, user_id: str, data: Any
    ) -> dict[str, Any]:
        if self._elsewhere(group_id):
            return await self._forward(caller, "set_role", group_id, user_id, data)
        return await self._set_role_here(caller, group_id, user_id, data)

    async def _set_role_here(
        self, caller: Caller, group_id: str, user_id: str, data: Any
    ) -> dict[str, Any]:
        role = validate.required_string(validate.body(data), "role", max_len=16)
        if role not in ("admin", "member"):
            raise bad_request('role must be "admin" or "member"')
        self._changes.take(caller.user_id)

        def plan(chat: Chat, members: list[Member]) -> GroupChange | None:
            self._require_admin(caller, members)
            target = next((m for m in members if m.user_id == user_id), None)
            if target is None:
                raise not_found("not a member of this group")
            if target.role == role:
                return None
            if role == "member" and sum(m.role == "admin" for m in members) == 1:
                raise ChatdError("conflict", "a group needs an admin; promote another one first")
            draft = system_draft(chat.chat_id, caller, "role_changed", [user_id], role=role)
            return GroupChange(chat.chat_id, chat.version, draft, roles=((user_id, role),))  # type: ignore[arg-type]

        return await self._change(caller, group_id, plan)

    # -- in a cluster: changes run on the chat's owner ---------------------------

    def _elsewhere(self, chat_id: str) -> bool:
        return self._owners is not None and self._owners.elsewhere(chat_id)

    async def _forward(self, caller: Caller, method: str, chat_id: str, *args: Any) -> Any:
        assert self._owners is not None
        payload = {
            "caller": dataclasses.asdict(caller),
            "method": method,
            "chat_id": chat_id,
            "args": list(args),
        }
        return await self._owners.forward(chat_id, "group", payload)

    async def _serve(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A change forwarded by the node its caller used; run here, the owner."""
        caller, method = Caller(**payload["caller"]), payload["method"]
        chat_id, args = payload["chat_id"], payload["args"]
        if method == "create":
            return await self._create_here(caller, args[0], chat_id)
        changes = {
            "update": self._update_here,
            "add_members": self._add_members_here,
            "remove_member": self._remove_member_here,
            "set_role": self._set_role_here,
        }
        change = changes.get(method)
        if change is None:
            raise bad_request(f"unknown group change {method}")
        return await change(caller, chat_id, *args)  # type: ignore[operator]

    # -- helpers --------------------------------------------------------------

    async def _change(self, caller: Caller, group_id: str, plan: Plan) -> dict[str, Any]:
        for _ in range(RETRIES):
            chat, members = await self._current(caller, group_id)
            change = plan(chat, members)
            if change is None:  # nothing to do: answer with the group as it is
                return group_view(chat, members, self.max_members)
            ticket = self._fanout.begin(group_id)
            try:
                message = await self._storage.chats.change_group(change)
                # To the members before and after (a removed one sees its removal);
                # once released, every node forgets the chat's cached members.
                recipients = dict.fromkeys([m.user_id for m in members] + list(change.add))
                self._fanout.message(
                    ticket, message, recipients=recipients, membership_changed=True
                )
            except StaleVersion:
                continue
            finally:
                self._fanout.abandon(ticket)  # no-op once the message joined the line
            if caller.user_id in change.remove:
                return group_view(
                    chat, [m for m in members if m.user_id != caller.user_id], self.max_members
                )
            return await self.describe(group_id)
        raise ChatdError("unavailable", "the group is changing too fast; retry")

    async def _current(self, caller: Caller, group_id: str) -> tuple[Chat, list[Member]]:
        chat = await self._storage.chats.get(group_id)
        if chat is None or chat.kind != "group":
            raise not_found("group not found")
        members = await self._storage.chats.members(group_id)
        if not any(m.user_id == caller.user_id for m in members):
            raise not_found("group not found")
        return chat, members

    @staticmethod
    def _require_admin(caller: Caller, members: list[Member]) -> None:
        if not any(m.user_id == caller.user_id and m.role == "admin" for m in members):
            raise forbidden("only the group's admins may do this")

    def _user_ids(self, data: Any, name: str, *, allow_empty: bool = False) -> list[str]:
        value = data.get(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad_request(f"{name} must be a list of user ids")
        if not value and not allow_empty:
            raise bad_request(f"{name} must not be empty")
        if len(value) > self.max_members:
            raise ChatdError("conflict", f"a group holds at most {self.max_members} members")
        return value

    async def _require_addable(self, caller: Caller, user_ids: list[str]) -> None:
        """Every user exists and lets the caller add them to a group (``group_add``)."""
        users: list[User] = []
        for user_id in user_ids:
            user = await self._storage.users.get(user_id)
            if user is None:
                raise not_found(f"user not found: {user_id}")
            users.append(user)
        choosy = [u for u in users if u.group_add == "contacts"]
        if not choosy:
            return
        # Who has the caller as a contact: one read, whatever the number of users.
        allowing = set(await self._storage.contacts.watchers(caller.user_id))
        refusing = [u.user_id for u in choosy if u.user_id not in allowing]
        if refusing:
            raise forbidden(
                "only their contacts may add these users to groups: " + ", ".join(refusing)
            )
