"""Group creation and changes: commit by numbering the system message, then apply.

A change is *committed* when its system message is numbered: that claim is
conditional on the bucket's epoch being ``expected_version`` and moves it to
``expected_version + 1`` (sequencer.py), so of two changes computed from one
version exactly one commits, and no send checked against the old member list
can be numbered after it. The message row carries the change itself (JSON in
``change``), so applying it to the chat partition is a deterministic
roll-forward anyone can finish: derived max-register and inbox writes first
(idempotent), then one conditional batch on the chat partition that moves
``version`` and rewrites the member rows together (``IF version = ?``).

If the process dies after the commit, the chat partition keeps the old version
until the next send or change to the chat finds the epoch ahead of the view and
rolls the change forward; reads meanwhile show the group as it was before. A
creation is found through ``get`` and the inbox (see chats.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from cassandra.query import UNSET_VALUE

from chatd.core.errors import ChatdError, StaleVersion, not_found
from chatd.core.ids import new_id, now_ms
from chatd.core.models import Chat, GroupChange, Member, Message, MessageDraft
from chatd.storage.scylla import marks
from chatd.storage.scylla.bridge import Cql, Row
from chatd.storage.scylla.common import bucket_of, build_message, claim_row
from chatd.storage.scylla.sequencer import Entry, Sequencer

log = logging.getLogger("chatd.storage.scylla")

SETTINGS = ("title", "description", "avatar_media_id")
PERIOD_MS = 30 * 86_400_000

CQL = {
    "groups.state": "SELECT version, kind, user_id, role, left_seq FROM chat_members "
    "WHERE chat_id = ?",
    "groups.version": "SELECT version, kind FROM chat_members WHERE chat_id = ? LIMIT 1",
    "groups.cas": "UPDATE chat_members SET version = ? WHERE chat_id = ? IF version = ?",
    "groups.create": "UPDATE chat_members SET kind = 'group', created_at = ?, title = ?, "
    "description = ?, avatar_media_id = ?, created_by = ?, version = 1 "
    "WHERE chat_id = ? IF version = null",
    **{f"groups.set_{s}": f"UPDATE chat_members SET {s} = ? WHERE chat_id = ?" for s in SETTINGS},
    "groups.member": "UPDATE chat_members SET role = ?, joined_at = ?, joined_seq = ?, "
    "left_seq = ? WHERE chat_id = ? AND user_id = ?",
    "groups.leave": "UPDATE chat_members SET left_seq = ? WHERE chat_id = ? AND user_id = ?",
    "groups.role": "UPDATE chat_members SET role = ? WHERE chat_id = ? AND user_id = ?",
    "groups.system": "SELECT message_id, sender_id, created_at, change FROM messages "
    "WHERE chat_id = ? AND bucket = ? AND seq = ?",
    "groups.inbox": "INSERT INTO user_chats (user_id, chat_id, kind) VALUES (?, ?, 'group')",
    "groups.index": "INSERT INTO group_index (period, chat_id) VALUES (?, ?)",
    "groups.period": "INSERT INTO group_periods (shard, period) VALUES (0, ?)",
}


def period_of(chat_id: str) -> int:
    """The 30-day period of a UUIDv7 id's timestamp (0 for other ids)."""
    try:
        return int(chat_id.replace("-", "")[:12], 16) // PERIOD_MS
    except ValueError:
        return 0


def _unset(value: Any) -> Any:
    return UNSET_VALUE if value is None else value


class ScyllaGroups:
    def __init__(self, cql: Cql) -> None:
        self._cql = cql
        self.sequencer: Sequencer  # set by ScyllaStorage

    async def create_group(
        self, chat: Chat, members: Sequence[Member], system: MessageDraft
    ) -> Message:
        async with self._cql.gate.held():
            payload = {
                "create": {
                    "created_at": chat.created_at,
                    "title": chat.title,
                    "description": chat.description,
                    "avatar_media_id": chat.avatar_media_id,
                    "created_by": chat.created_by,
                },
                "members": [[m.user_id, m.role, m.joined_at] for m in members],
            }
            message = build_message(system, new_id(), 1, now_ms())
            batch = self._cql.batch(
                [
                    ("seq.init_epoch", (1, 1, chat.chat_id, 0)),
                    ("seq.claim", claim_row(message, 0, json.dumps(payload))),
                ]
            )

            async def verify() -> bool:
                row = await self._cql.one("seq.row_id", (chat.chat_id, 0, 1), serial=True)
                return row is not None and row.message_id == message.message_id

            if not (await self._cql.lwt(batch, verify=verify)).applied:
                raise ChatdError("conflict", "chat exists")
            await self.roll_forward(chat.chat_id, 1, 1)
            return message

    async def change_group(self, change: GroupChange) -> Message:
        unknown = {name for name, _ in change.settings} - set(SETTINGS)
        if unknown:
            raise ValueError(f"not a group setting: {sorted(unknown)}")
        async with self._cql.gate.held():
            row = await self._cql.one("groups.version", (change.chat_id,))
            if row is None or row.kind != "group":
                raise not_found("group not found")
            if row.version != change.expected_version:
                raise StaleVersion("the group changed meanwhile; retry")
            payload = {
                "v": change.expected_version,
                "add": list(change.add),
                "remove": list(change.remove),
                "roles": [list(r) for r in change.roles],
                "settings": [list(s) for s in change.settings],
            }
            future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            entry = Entry(
                change.system,
                future,
                change=json.dumps(payload),
                expected=change.expected_version,
            )
            self.sequencer.submit(entry)
            return await future

    async def recover_created(self, chat_id: str) -> bool:
        """Finish a creation whose process died after committing it (see chats.get)."""
        row = await self._cql.one("groups.system", (chat_id, 0, 1))
        if row is None or not row.change or '"create"' not in row.change:
            return False
        await self.roll_forward(chat_id, 1, 1)
        return True

    # -- roll-forward -----------------------------------------------------------

    async def roll_forward(self, chat_id: str, epoch: int, epoch_seq: int) -> None:
        """Apply the committed change that moved ``chat_id`` to ``epoch`` (idempotent)."""
        rows = await self._cql.all_rows("groups.state", (chat_id,))
        version = rows[0].version if rows else None
        if version is not None and version >= epoch:
            return
        # Committed by Paxos (we saw its epoch), so a quorum read sees it.
        system = await self._cql.one("groups.system", (chat_id, bucket_of(epoch_seq), epoch_seq))
        if system is None or not system.change:
            log.error("chat %s: no change recorded at seq %d", chat_id, epoch_seq)
            raise ChatdError("unavailable", "chat state is inconsistent")
        payload = json.loads(system.change)
        if "create" in payload:
            await self._apply_create(chat_id, system, payload)
        elif version == epoch - 1:
            await self._apply_change(chat_id, rows, version, epoch_seq, system, payload)
        else:
            log.error("chat %s: version %s cannot move to %d", chat_id, version, epoch)
            raise ChatdError("unavailable", "chat state is inconsistent")

    async def _apply_create(self, chat_id: str, system: Row, payload: dict[str, Any]) -> None:
        info, members = payload["create"], payload["members"]
        period = period_of(chat_id)
        derived: list[tuple[Any, Sequence[Any]]] = [
            ("groups.inbox", (user_id, chat_id)) for user_id, _, _ in members
        ]
        derived += [("groups.index", (period, chat_id)), ("groups.period", (period,))]
        derived.append(("messages.index", (system.message_id, chat_id, 1)))
        own = [marks.last(chat_id, 1, system.created_at), marks.both(chat_id, system.sender_id, 1)]
        derived.append((self._cql.batch(own), ()))
        await self._cql.writes(derived)
        items: list[tuple[str, Sequence[Any]]] = [
            (
                "groups.create",
                (
                    info["created_at"],
                    _unset(info["title"]),
                    _unset(info["description"]),
                    _unset(info["avatar_media_id"]),
                    _unset(info["created_by"]),
                    chat_id,
                ),
            )
        ]
        roles = {user_id: (role, joined_at) for user_id, role, joined_at in members}
        items += [
            ("groups.member", (role, joined_at, 0, None, chat_id, user_id))
            for user_id, (role, joined_at) in roles.items()
        ]
        await self._cas(chat_id, items, 1)

    async def _apply_change(
        self,
        chat_id: str,
        rows: list[Row],
        version: int,
        seq: int,
        system: Row,
        payload: dict[str, Any],
    ) -> None:
        current = {r.user_id for r in rows if r.role is not None and r.left_seq is None}
        at = int(system.created_at)
        own = [marks.last(chat_id, seq, at), marks.both(chat_id, system.sender_id, seq)]
        own += [marks.both(chat_id, u, seq - 1) for u in payload["add"] if seq > 1]
        derived: list[tuple[Any, Sequence[Any]]] = [(self._cql.batch(own), ())]
        derived += [("groups.inbox", (u, chat_id)) for u in payload["add"]]
        derived.append(("messages.index", (system.message_id, chat_id, seq)))
        await self._cql.writes(derived)
        # One statement per row: writes in a batch share a timestamp, so two
        # writes of one cell (join as member, then made admin) would not order.
        joins = {u: "member" for u in payload["add"]}
        current |= set(joins)
        leaves = [u for u in payload["remove"] if u in current]
        current -= set(leaves)
        roles = {u: role for u, role in payload["roles"] if u in current}
        joins.update({u: r for u, r in roles.items() if u in joins})
        items: list[tuple[str, Sequence[Any]]] = [("groups.cas", (version + 1, chat_id, version))]
        settings = dict(payload["settings"])
        items += [(f"groups.set_{name}", (value, chat_id)) for name, value in settings.items()]
        items += [
            ("groups.member", (r, at, seq - 1, seq if u in leaves else None, chat_id, u))
            for u, r in joins.items()
        ]
        items += [("groups.leave", (seq, chat_id, u)) for u in leaves if u not in joins]
        items += [("groups.role", (r, chat_id, u)) for u, r in roles.items() if u not in joins]
        await self._cas(chat_id, items, version + 1)

    async def _cas(self, chat_id: str, items: list[tuple[str, Sequence[Any]]], to: int) -> None:
        """The one conditional batch that moves the chat partition to version ``to``."""

        async def verify() -> bool:
            row = await self._cql.one("groups.version", (chat_id,), serial=True)
            return row is not None and row.version is not None and row.version >= to

        await self._cql.lwt(self._cql.batch(items), verify=verify)
        # Not applied means another node applied it first: the same change, so done.
