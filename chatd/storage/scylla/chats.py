"""Chats on ScyllaDB: the chat partition, the inbox, and the one direct chat per pair.

``get_or_create_direct`` decides the chat id with ``IF NOT EXISTS`` on the pair
row, which also holds everything the chat is made of. Writing the inbox rows
and the chat partition after that is deterministic and idempotent, so any
caller that finds the pair row but an incomplete chat finishes it; two
concurrent callers write the same values.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from cassandra.query import UNSET_VALUE

from chatd.core.models import Chat, GroupChange, Member, Message, MessageDraft
from chatd.storage.scylla import marks
from chatd.storage.scylla.bridge import Cql, Row, gather_limited
from chatd.storage.scylla.common import or_zero
from chatd.storage.scylla.groups import ScyllaGroups, period_of

_STATICS = (
    "kind, created_at, title, description, avatar_media_id, created_by, last_seq, "
    "last_activity, version"
)
_MEMBER = "user_id, role, joined_at, joined_seq, delivered_seq, read_seq, left_seq"

CQL = {
    "chats.get": f"SELECT {_STATICS} FROM chat_members WHERE chat_id = ? LIMIT 1",
    "chats.whole": f"SELECT {_STATICS}, {_MEMBER} FROM chat_members WHERE chat_id = ?",
    "chats.members": f"SELECT {_MEMBER} FROM chat_members WHERE chat_id = ?",
    "chats.member": f"SELECT {_MEMBER} FROM chat_members WHERE chat_id = ? AND user_id = ?",
    "chats.inbox": "SELECT chat_id, kind, peer_id FROM user_chats WHERE user_id = ?",
    # The chat's statics and one member's row, in one read of the chat partition.
    "chats.entry": f"SELECT {_STATICS}, {_MEMBER} FROM chat_members "
    "WHERE chat_id = ? AND user_id = ?",
    "chats.put_inbox": "INSERT INTO user_chats (user_id, chat_id, kind, peer_id) "
    "VALUES (?, ?, 'direct', ?)",
    "chats.pair": "SELECT chat_id, created_at, created_by, user_a, user_b FROM direct_pairs "
    "WHERE pair = ?",
    "chats.claim_pair": "INSERT INTO direct_pairs "
    "(pair, chat_id, created_at, created_by, user_a, user_b) VALUES (?, ?, ?, ?, ?, ?) "
    "IF NOT EXISTS",
    "chats.direct": "INSERT INTO chat_members (chat_id, kind, created_at, created_by, version) "
    "VALUES (?, 'direct', ?, ?, 0)",
    "chats.direct_member": "INSERT INTO chat_members (chat_id, user_id, role, joined_at, "
    "joined_seq) VALUES (?, ?, 'member', ?, 0)",
    "chats.groups": "SELECT chat_id FROM group_index WHERE period = ? AND chat_id > ? LIMIT ?",
    "chats.periods": "SELECT period FROM group_periods WHERE shard = 0 AND period >= ?",
}


def _chat(chat_id: str, row: Row) -> Chat:
    created_at = int(row.created_at)
    return Chat(
        chat_id=chat_id,
        kind=row.kind,
        created_at=created_at,
        title=row.title,
        description=row.description,
        avatar_media_id=row.avatar_media_id,
        created_by=row.created_by,
        last_seq=or_zero(row.last_seq),
        last_activity=int(row.last_activity) if row.last_activity is not None else created_at,
        version=or_zero(row.version),
    )


def _member(chat_id: str, row: Row) -> Member:
    return Member(
        chat_id=chat_id,
        user_id=row.user_id,
        role=row.role,
        joined_at=int(row.joined_at),
        joined_seq=or_zero(row.joined_seq),
        delivered_seq=or_zero(row.delivered_seq),
        read_seq=or_zero(row.read_seq),
        left_seq=row.left_seq,
    )


def _is_member_row(row: Row | None) -> bool:
    """Rows holding only watermark cells (written ahead of a join) are not members."""
    return row is not None and row.user_id is not None and row.role is not None


class ScyllaChats:
    def __init__(self, cql: Cql, groups: ScyllaGroups) -> None:
        self._cql = cql
        self._groups = groups

    # -- direct chats ------------------------------------------------------------

    async def get_or_create_direct(self, chat: Chat, user_a: str, user_b: str) -> Chat:
        low, high = sorted((user_a, user_b))
        pair = f"{low}:{high}"
        async with self._cql.gate.held():
            row = await self._cql.one("chats.pair", (pair,))
            if row is None:
                by = UNSET_VALUE if chat.created_by is None else chat.created_by
                params = (pair, chat.chat_id, chat.created_at, by, low, high)

                async def verify() -> bool:
                    found = await self._cql.one("chats.pair", (pair,), serial=True)
                    return found is not None and found.chat_id == chat.chat_id

                result = await self._cql.lwt("chats.claim_pair", params, verify=verify)
                if result.applied:
                    row = SimpleNamespace(
                        chat_id=chat.chat_id,
                        created_at=chat.created_at,
                        created_by=chat.created_by,
                        user_a=low,
                        user_b=high,
                    )
                else:
                    row = result.rows[0] if result.rows else None
                    row = row or await self._cql.one("chats.pair", (pair,), serial=True)
            assert row is not None
            existing = await self._whole(row.chat_id)
            if existing is None:
                await self._complete_direct(row)
                existing = await self._whole(row.chat_id)
            assert existing is not None
            return existing

    async def _whole(self, chat_id: str) -> Chat | None:
        """The chat if its partition is complete (statics and both direct members)."""
        rows = await self._cql.rows("chats.whole", (chat_id,))
        if not rows or rows[0].kind is None:
            return None
        if sum(1 for r in rows if _is_member_row(r)) < 1:
            return None
        return _chat(chat_id, rows[0])

    async def _complete_direct(self, pair: Any) -> None:
        users = list(dict.fromkeys((pair.user_a, pair.user_b)))
        chat_id, created_at = pair.chat_id, int(pair.created_at)
        peers = {pair.user_a: pair.user_b, pair.user_b: pair.user_a}
        await self._cql.writes(
            [
                ("chats.put_inbox", (u, chat_id, peers[u] if peers[u] != u else UNSET_VALUE))
                for u in users
            ]
        )
        created_by = UNSET_VALUE if pair.created_by is None else pair.created_by
        items: list[tuple[str, Sequence[Any]]] = [
            ("chats.direct", (chat_id, created_at, created_by)),
            marks.last(chat_id, 0, created_at),
        ]
        items += [("chats.direct_member", (chat_id, u, created_at)) for u in users]
        await self._cql.write(self._cql.batch(items))

    # -- groups ------------------------------------------------------------------

    async def create_group(
        self, chat: Chat, members: Sequence[Member], system: MessageDraft
    ) -> Message:
        return await self._groups.create_group(chat, members, system)

    async def change_group(self, change: GroupChange) -> Message:
        return await self._groups.change_group(change)

    # -- reads -------------------------------------------------------------------

    async def get(self, chat_id: str) -> Chat | None:
        row = await self._cql.one("chats.get", (chat_id,))
        if row is None or row.kind is None:
            if not await self._groups.recover_created(chat_id):
                return None
            row = await self._cql.one("chats.get", (chat_id,))
            if row is None or row.kind is None:
                return None
        return _chat(chat_id, row)

    async def members(self, chat_id: str) -> list[Member]:
        rows = await self._cql.all_rows("chats.members", (chat_id,))
        current = [_member(chat_id, r) for r in rows if _is_member_row(r) and r.left_seq is None]
        return sorted(current, key=lambda m: (m.joined_at, m.user_id))

    async def member(self, chat_id: str, user_id: str) -> Member | None:
        row = await self._cql.one("chats.member", (chat_id, user_id))
        return _member(chat_id, row) if _is_member_row(row) else None

    async def memberships(self, user_id: str) -> list[Member]:
        inbox = await self._cql.all_rows("chats.inbox", (user_id,))
        found = await gather_limited([self.member(r.chat_id, user_id) for r in inbox])
        out = []
        for row, member in zip(inbox, found, strict=True):
            if member is None and row.kind == "group" and await self.get(row.chat_id):
                member = await self.member(row.chat_id, user_id)  # a creation just finished
            if member is not None:
                out.append(member)
        return out

    async def inbox(
        self, user_id: str, limit: int, before: tuple[int, str] | None = None
    ) -> list[tuple[Chat, Member]]:
        # No table keeps a user's chats in activity order (it would take a write
        # per member and message), so the page is cut from the user_chats
        # partition and one small read per chat (statics + the user's row): the
        # reads memberships() makes anyway. Only the page is returned for the
        # caller to dress up (members, last message).
        inbox = await self._cql.all_rows("chats.inbox", (user_id,))
        found = await gather_limited([self._entry(r.chat_id, r.kind, user_id) for r in inbox])
        entries = [e for e in found if e is not None]
        if before is not None:
            entries = [e for e in entries if (e[0].last_activity, e[0].chat_id) < before]
        return heapq.nlargest(limit, entries, key=lambda e: (e[0].last_activity, e[0].chat_id))

    async def _entry(self, chat_id: str, kind: str, user_id: str) -> tuple[Chat, Member] | None:
        row = await self._cql.one("chats.entry", (chat_id, user_id))
        if not _is_member_row(row) and kind == "group" and await self.get(chat_id):
            row = await self._cql.one("chats.entry", (chat_id, user_id))  # creation finished
        if row is None or not _is_member_row(row) or row.kind is None:
            return None
        return _chat(chat_id, row), _member(chat_id, row)

    async def group_ids(self, limit: int, after: str = "") -> list[str]:
        ids: list[str] = []
        start = period_of(after) if after else 0
        for row in await self._cql.all_rows("chats.periods", (start,)):
            rows = await self._cql.rows("chats.groups", (row.period, after, limit - len(ids)))
            ids.extend(r.chat_id for r in rows)
            if len(ids) >= limit:
                break
        return ids

    async def direct_peers(self, user_id: str) -> list[str]:
        inbox = await self._cql.all_rows("chats.inbox", (user_id,))
        return [r.peer_id for r in inbox if r.kind == "direct" and r.peer_id is not None]
