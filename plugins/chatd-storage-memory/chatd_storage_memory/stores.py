"""The entity stores of the storage port, on ``Tables``.

No method awaits between reading and writing, so each runs whole before any
other coroutine: that is what makes an append, a claim or a compare-and-set
atomic here, between two ``MemoryStorage`` objects on the same tables too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chatd.core.e2e import check_coverage
from chatd.core.errors import ChatdError, StaleVersion
from chatd.core.ids import new_id, now_ms
from chatd.core.models import (
    Appended,
    AuditEntry,
    Chat,
    Ciphertext,
    Contact,
    Device,
    DeviceKeys,
    GroupChange,
    Media,
    MediaRef,
    MediaUsage,
    Member,
    Message,
    MessageDraft,
    PendingChat,
    Prekey,
    Totals,
    User,
    WatermarkMove,
    WatermarkResult,
)
from chatd.core.ports.push import DeadItem, OutboxItem, PushTarget, RegisteredTarget
from chatd.core.prekeys import prekeys_to_add

if TYPE_CHECKING:
    from chatd_storage_memory.data import Tables
    from chatd_storage_memory.storage import MemoryStorage

USER_FIELDS = frozenset(
    {
        "display_name",
        "status_message",
        "avatar_media_id",
        "password_hash",
        "is_admin",
        "group_add",
        "banned",
        "last_seen",
    }
)
GROUP_SETTINGS = frozenset({"title", "description", "avatar_media_id"})
#: Most device ids one ``revocations_since`` call returns.
FEED_PAGE = 1000


class _Store:
    def __init__(self, storage: MemoryStorage) -> None:
        self._storage = storage

    @property
    def _t(self) -> Tables:
        return self._storage.tables()


class Users(_Store):
    async def create(self, user: User) -> None:
        t = self._t
        name = user.username.lower()
        if name in t.usernames or user.user_id in t.users:
            raise ChatdError("conflict", "username is taken")
        t.usernames[name] = user.user_id
        t.users[user.user_id] = dataclasses.replace(user, username=name)

    async def get(self, user_id: str) -> User | None:
        return self._t.users.get(user_id)

    async def get_by_name(self, username: str) -> User | None:
        t = self._t
        user_id = t.usernames.get(username.lower())
        return t.users.get(user_id) if user_id is not None else None

    async def search(self, prefix: str, limit: int, after: str = "") -> list[User]:
        t = self._t
        start = prefix.lower()
        names = sorted(n for n in t.usernames if n.startswith(start) and n > after)[:limit]
        return [t.users[t.usernames[n]] for n in names]

    async def list_all(self, limit: int, after_username: str = "") -> list[User]:
        t = self._t
        names = sorted(n for n in t.usernames if n > after_username)[:limit]
        return [t.users[t.usernames[n]] for n in names]

    async def update(self, user_id: str, **fields: object) -> User | None:
        unknown = set(fields) - USER_FIELDS
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        t = self._t
        user = t.users.get(user_id)
        if user is None:
            return None
        user = dataclasses.replace(user, **fields)  # type: ignore[arg-type]
        t.users[user_id] = user
        return user


class Devices(_Store):
    async def create(self, device: Device, token_hash: str) -> None:
        t = self._t
        if device.device_id in t.devices or token_hash in t.tokens:
            raise ChatdError("conflict", "device or token exists")
        t.devices[device.device_id] = device
        t.tokens[token_hash] = device.device_id

    async def by_token(self, token_hash: str) -> Device | None:
        t = self._t
        device_id = t.tokens.get(token_hash)
        return t.devices.get(device_id) if device_id is not None else None

    async def list_for_user(self, user_id: str) -> list[Device]:
        live = [
            d for d in self._t.devices.values() if d.user_id == user_id and d.revoked_at is None
        ]
        return sorted(live, key=lambda d: d.created_at)

    async def revoke(self, device_id: str) -> bool:
        t = self._t
        device = t.devices.get(device_id)
        if device is None or device.revoked_at is not None:
            return False
        t.devices[device_id] = dataclasses.replace(device, revoked_at=now_ms())
        t.revocations.append(device_id)
        _forget_device(t, device_id)
        return True

    async def revoke_all(self, user_id: str) -> list[str]:
        t = self._t
        now = now_ms()
        ids = _live_devices(t, user_id)
        for device_id in ids:
            t.devices[device_id] = dataclasses.replace(t.devices[device_id], revoked_at=now)
            t.revocations.append(device_id)
            _forget_device(t, device_id)
        return ids

    async def revocations_since(self, cursor: int) -> tuple[list[str], int]:
        feed = self._t.revocations
        if cursor < 0:  # a fresh node starts at the end of the feed
            return [], len(feed)
        page = feed[cursor : cursor + FEED_PAGE]
        return page, cursor + len(page)

    async def record_ban(self, user_id: str) -> None:
        t = self._t
        t.revocations.extend(_live_devices(t, user_id))


def _forget_device(t: Tables, device_id: str) -> None:
    """A revoked device's bundle, prekeys and ciphertexts go with it."""
    t.keys.pop(device_id, None)
    t.prekeys.pop(device_id, None)
    for key in [k for k in t.ciphertexts if k[0] == device_id]:
        del t.ciphertexts[key]


def _live_devices(t: Tables, user_id: str) -> list[str]:
    return [
        d.device_id for d in t.devices.values() if d.user_id == user_id and d.revoked_at is None
    ]


class Contacts(_Store):
    async def put(self, contact: Contact) -> None:
        t = self._t
        key = (contact.user_id, contact.contact_id)
        known = t.contacts.get(key)
        # A repeated put renames the contact; it keeps its place (created_at).
        t.contacts[key] = dataclasses.replace(known, name=contact.name) if known else contact

    async def delete(self, user_id: str, contact_id: str) -> bool:
        return self._t.contacts.pop((user_id, contact_id), None) is not None

    async def list_for_user(self, user_id: str) -> list[Contact]:
        mine = [c for (owner, _), c in self._t.contacts.items() if owner == user_id]
        return sorted(mine, key=lambda c: c.created_at)

    async def watchers(self, contact_id: str) -> list[str]:
        return [owner for (owner, contact) in self._t.contacts if contact == contact_id]


class Invites(_Store):
    async def create(self, code: str, uses: int, expires_at: int | None) -> None:
        t = self._t
        if code in t.invites:
            raise ChatdError("conflict", "invite code exists")
        t.invites[code] = (uses, expires_at)

    async def consume(self, code: str, now: int) -> bool:
        t = self._t
        uses, expires_at = t.invites.get(code, (0, None))
        if uses <= 0 or (expires_at is not None and expires_at <= now):
            return False
        t.invites[code] = (uses - 1, expires_at)
        return True


def _join(t: Tables, member: Member) -> None:
    t.members.setdefault(member.chat_id, {})[member.user_id] = member
    t.inbox.setdefault(member.user_id, {})[member.chat_id] = None


def _store_system(t: Tables, message: Message) -> None:
    """A system message: numbered like any other, bumps the chat's version, and the
    actor has read it (its watermarks rise to it)."""
    t.messages.setdefault(message.chat_id, []).append(message)
    t.by_id[message.message_id] = message
    t.sent[(message.sender_id, message.client_msg_id)] = message
    chat = t.chats[message.chat_id]
    t.chats[chat.chat_id] = dataclasses.replace(
        chat, last_seq=message.seq, last_activity=message.created_at, version=chat.version + 1
    )
    _sender_has_read(t, message)


def _sender_has_read(t: Tables, message: Message) -> tuple[int, int] | None:
    """Raise the sender's watermarks to its own message; the ones before, if a member."""
    member = t.members.get(message.chat_id, {}).get(message.sender_id)
    if member is None:
        return None
    t.members[message.chat_id][message.sender_id] = dataclasses.replace(
        member,
        delivered_seq=max(member.delivered_seq, message.seq),
        read_seq=max(member.read_seq, message.seq),
    )
    return member.read_seq, member.delivered_seq


class Chats(_Store):
    async def get_or_create_direct(self, chat: Chat, user_a: str, user_b: str) -> Chat:
        t = self._t
        pair = (min(user_a, user_b), max(user_a, user_b))
        chat_id = t.directs.get(pair)
        if chat_id is None:
            chat_id = chat.chat_id
            t.chats[chat_id] = Chat(
                chat_id,
                "direct",
                chat.created_at,
                created_by=chat.created_by,
                last_activity=chat.created_at,
            )
            t.directs[pair] = chat_id
            for user_id in dict.fromkeys(pair):
                _join(t, Member(chat_id, user_id, "member", chat.created_at))
        return t.chats[chat_id]

    async def create_group(
        self, chat: Chat, members: Sequence[Member], system: MessageDraft
    ) -> Message:
        t = self._t
        now = now_ms()
        t.chats[chat.chat_id] = dataclasses.replace(
            chat, kind="group", last_seq=0, last_activity=now, version=0
        )
        for m in members:
            _join(t, Member(chat.chat_id, m.user_id, m.role, m.joined_at))
        message = system.to_message(message_id=new_id(), seq=1, created_at=now)
        _store_system(t, message)
        return message

    async def change_group(self, change: GroupChange) -> Message:
        unknown = {name for name, _ in change.settings} - GROUP_SETTINGS
        if unknown:
            raise ValueError(f"not a group setting: {sorted(unknown)}")
        t = self._t
        chat = t.chats.get(change.chat_id)
        if chat is None or chat.kind != "group":
            raise ChatdError("not_found", "group not found")
        if chat.version != change.expected_version:
            raise StaleVersion("the group changed meanwhile; retry")
        now, last = now_ms(), chat.last_seq
        seq = last + 1
        members = t.members.setdefault(chat.chat_id, {})
        for user_id in change.add:  # they join just before the system message
            past = members.pop(user_id, None)  # a rejoin goes to the end of the order
            _join(
                t,
                Member(
                    chat.chat_id,
                    user_id,
                    "member",
                    now,
                    joined_seq=last,
                    delivered_seq=max(past.delivered_seq if past else 0, last),
                    read_seq=max(past.read_seq if past else 0, last),
                ),
            )
        for user_id in change.remove:  # they leave with it: their last message
            m = members.get(user_id)
            if m is not None and m.active:
                members[user_id] = dataclasses.replace(m, left_seq=seq)
        for user_id, role in change.roles:
            m = members.get(user_id)
            if m is not None and m.active:
                members[user_id] = dataclasses.replace(m, role=role)
        if change.settings:
            t.chats[chat.chat_id] = dataclasses.replace(chat, **dict(change.settings))  # type: ignore[arg-type]
        message = change.system.to_message(message_id=new_id(), seq=seq, created_at=now)
        _store_system(t, message)
        return message

    async def get(self, chat_id: str) -> Chat | None:
        return self._t.chats.get(chat_id)

    async def members(self, chat_id: str) -> list[Member]:
        current = [m for m in self._t.members.get(chat_id, {}).values() if m.active]
        return sorted(current, key=lambda m: (m.joined_at, m.user_id))

    async def member(self, chat_id: str, user_id: str) -> Member | None:
        return self._t.members.get(chat_id, {}).get(user_id)

    async def memberships(self, user_id: str) -> list[Member]:
        t = self._t
        return [t.members[chat_id][user_id] for chat_id in t.inbox.get(user_id, {})]

    async def inbox(
        self, user_id: str, limit: int, before: tuple[int, str] | None = None
    ) -> list[tuple[Chat, Member]]:
        t = self._t
        pairs = [
            (t.chats[chat_id], t.members[chat_id][user_id]) for chat_id in t.inbox.get(user_id, {})
        ]
        pairs.sort(key=lambda p: (p[0].last_activity, p[0].chat_id), reverse=True)
        if before is not None:
            pairs = [p for p in pairs if (p[0].last_activity, p[0].chat_id) < before]
        return pairs[:limit]

    async def group_ids(self, limit: int, after: str = "") -> list[str]:
        groups = (c.chat_id for c in self._t.chats.values() if c.kind == "group")
        return sorted(i for i in groups if i > after)[:limit]

    async def direct_peers(self, user_id: str) -> list[str]:
        peers = []
        for low, high in self._t.directs:
            if low != high and user_id in (low, high):
                peers.append(high if low == user_id else low)
        return peers


class Messages(_Store):
    async def append(self, draft: MessageDraft) -> Appended:
        t = self._t
        known = t.sent.get((draft.sender_id, draft.client_msg_id))
        if known is not None:
            return Appended(known, created=False)
        chat = t.chats.get(draft.chat_id)
        sender = t.members.get(draft.chat_id, {}).get(draft.sender_id)
        if chat is None or sender is None or not sender.active:
            raise ChatdError("not_found", "chat not found")
        if draft.encrypted:
            check_coverage(_required_devices(t, draft), (draft.ciphertexts or {}).keys())
        now = now_ms()
        message = draft.to_message(message_id=new_id(), seq=chat.last_seq + 1, created_at=now)
        t.messages.setdefault(chat.chat_id, []).append(message)
        t.by_id[message.message_id] = message
        t.sent[(draft.sender_id, draft.client_msg_id)] = message
        t.chats[chat.chat_id] = dataclasses.replace(chat, last_seq=message.seq, last_activity=now)
        for device_id, ciphertext in (draft.ciphertexts or {}).items():
            t.ciphertexts.setdefault((device_id, chat.chat_id), {})[message.seq] = (ciphertext, now)
        if message.media_id is not None:  # retention keeps the media from now on
            ref = MediaRef(message.media_id, chat.chat_id, message.seq, message.message_id)
            t.refs.setdefault(message.media_id, []).append(ref)
        before = _sender_has_read(t, message)
        assert before is not None
        # The sending device has its own message; its cursor moves only when that
        # leaves no gap, so nothing it has not seen is skipped on replay.
        cursor_key = (draft.sender_device_id, chat.chat_id)
        cursor = t.cursors.get(cursor_key)
        if (cursor is None and message.seq == 1) or cursor == message.seq - 1:
            t.cursors[cursor_key] = message.seq
        return Appended(message, True, *before)

    async def get(self, chat_id: str, message_id: str) -> Message | None:
        message = self._t.by_id.get(message_id)
        return message if message is not None and message.chat_id == chat_id else None

    async def at_seq(self, chat_id: str, seq: int) -> Message | None:
        stored = self._t.messages.get(chat_id, [])
        return stored[seq - 1] if 0 < seq <= len(stored) else None

    async def before(
        self, chat_id: str, before_seq: int, limit: int, min_seq: int = 0
    ) -> list[Message]:
        stored = self._t.messages.get(chat_id, [])
        high = min(before_seq - 1, len(stored))  # seqs min_seq+1 .. before_seq-1
        low = max(min_seq, high - limit)
        return stored[low:high][::-1] if high > low else []

    async def after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        start = max(after_seq, 0)
        return self._t.messages.get(chat_id, [])[start : start + max(limit, 0)]

    async def senders_between(self, chat_id: str, low_seq: int, high_seq: int) -> set[str]:
        stored = self._t.messages.get(chat_id, [])
        return {m.sender_id for m in stored[max(low_seq, 0) : max(high_seq, 0)]}


def _required_devices(t: Tables, draft: MessageDraft) -> list[str]:
    """The devices an encrypted draft must cover (``chatd.core.e2e``)."""
    members = {u for u, m in t.members.get(draft.chat_id, {}).items() if m.active}
    return [
        k.device_id
        for k in t.keys.values()
        if k.user_id in members
        and k.device_id != draft.sender_device_id
        and (d := t.devices.get(k.device_id)) is not None
        and d.revoked_at is None
    ]


class Receipts(_Store):
    async def advance(self, moves: Sequence[WatermarkMove]) -> list[WatermarkResult | None]:
        t = self._t
        results: list[WatermarkResult | None] = []
        for move in moves:
            member = t.members.get(move.chat_id, {}).get(move.user_id)
            if member is None:
                results.append(None)
                continue
            delivered, read = member.delivered_seq, member.read_seq
            new_read = max(read, move.read_seq)
            new_delivered = max(delivered, move.delivered_seq, new_read)  # read implies delivered
            if (new_delivered, new_read) != (delivered, read):
                t.members[move.chat_id][move.user_id] = dataclasses.replace(
                    member, delivered_seq=new_delivered, read_seq=new_read
                )
            if move.device_id is not None and move.delivered_seq > 0:
                key = (move.device_id, move.chat_id)
                t.cursors[key] = max(t.cursors.get(key, 0), move.delivered_seq)
                sealed = t.ciphertexts.get(key)
                if sealed:  # the device has what it acknowledged
                    for seq in [s for s in sealed if s <= move.delivered_seq]:
                        del sealed[seq]
            results.append(WatermarkResult(delivered, new_delivered, read, new_read))
        return results

    async def pending(self, user_id: str, device_id: str) -> list[PendingChat]:
        t = self._t
        found: list[tuple[int, PendingChat]] = []
        for chat_id in t.inbox.get(user_id, {}):
            member, chat = t.members[chat_id][user_id], t.chats[chat_id]
            after = max(member.joined_seq, t.cursors.get((device_id, chat_id), 0))
            last = chat.last_seq if member.left_seq is None else min(chat.last_seq, member.left_seq)
            if last > after:
                found.append((chat.last_activity, PendingChat(chat_id, after, last)))
        found.sort(key=lambda item: item[0])
        return [pending for _, pending in found]


class MediaRecords(_Store):
    async def create(self, media: Media) -> None:
        t = self._t
        if media.media_id in t.media:
            raise ChatdError("conflict", "media exists")
        t.media[media.media_id] = media

    async def get(self, media_id: str) -> Media | None:
        return self._t.media.get(media_id)

    async def get_many(self, media_ids: Sequence[str]) -> dict[str, Media]:
        t = self._t
        return {i: t.media[i] for i in dict.fromkeys(media_ids) if i in t.media}

    async def references(self, media_id: str, limit: int = 1000) -> list[MediaRef]:
        refs = sorted(self._t.refs.get(media_id, []), key=lambda r: r.message_id)
        return refs[:limit]

    async def unreferenced(self, created_before: int, limit: int) -> list[Media]:
        t = self._t
        candidates = [
            m
            for m in t.media.values()
            if m.created_at < created_before and m.media_id not in t.refs
        ]
        return sorted(candidates, key=lambda m: m.created_at)[:limit]

    async def delete_unreferenced(self, media_id: str) -> bool:
        t = self._t
        if media_id in t.refs or media_id not in t.media:
            return False
        del t.media[media_id]
        return True

    async def blob_in_use(self, sha256: str) -> bool:
        return any(sha256 in (m.sha256, m.thumbnail_sha256) for m in self._t.media.values())


class Keys(_Store):
    async def put(self, keys: DeviceKeys, one_time: Sequence[Prekey], *, limit: int) -> bool:
        t = self._t
        device = t.devices.get(keys.device_id)
        if device is not None and device.revoked_at is not None:
            raise ChatdError("unauthorized", "the token is invalid, expired or revoked")
        known = t.keys.get(keys.device_id)
        renewed = known is not None and known.identity_key != keys.identity_key
        held = set() if renewed else set(t.prekeys.get(keys.device_id, {}))
        fresh = prekeys_to_add(held, one_time, limit)  # raises before anything changes
        if renewed:
            t.prekeys.pop(keys.device_id, None)  # a reinstalled device: old prekeys go
        t.keys[keys.device_id] = keys
        prekeys = t.prekeys.setdefault(keys.device_id, {})
        for prekey in fresh:
            prekeys[prekey.key_id] = prekey.public_key
        return known is None

    async def get(self, device_id: str) -> DeviceKeys | None:
        return self._t.keys.get(device_id)

    async def claim(self, device_id: str) -> Prekey | None:
        prekeys = self._t.prekeys.get(device_id)
        if not prekeys:
            return None
        key_id = min(prekeys)
        return Prekey(key_id, prekeys.pop(key_id))

    async def count(self, device_id: str) -> int:
        return len(self._t.prekeys.get(device_id, {}))


class Push(_Store):
    async def put_target(self, target: PushTarget, registered_at: int) -> None:
        self._t.push_targets[target.device_id] = RegisteredTarget(target, registered_at)

    async def get_target(self, device_id: str) -> RegisteredTarget | None:
        return self._t.push_targets.get(device_id)

    async def delete_target(self, device_id: str) -> bool:
        t = self._t
        await self.cancel(device_id)
        return t.push_targets.pop(device_id, None) is not None

    async def targets(self, user_id: str) -> list[RegisteredTarget]:
        return [r for r in self._t.push_targets.values() if r.target.user_id == user_id]

    async def enqueue(self, items: Sequence[OutboxItem]) -> None:
        outbox = self._t.outbox
        for item in items:
            key = (item.device_id, item.chat_id)
            held = outbox.get(key)
            if held is None:
                outbox[key] = (item, 0)
            elif item.seq > held[0].seq:
                due = max(held[0].due_at, item.due_at)
                outbox[key] = (dataclasses.replace(item, due_at=due, attempts=0, last_error=""), 0)

    async def cancel(self, device_id: str) -> int:
        outbox = self._t.outbox
        keys = [k for k in outbox if k[0] == device_id]
        for key in keys:
            del outbox[key]
        return len(keys)

    async def claim(
        self, now: int, lease_ms: int, limit: int, devices: Sequence[str] | None = None
    ) -> list[OutboxItem]:
        outbox = self._t.outbox
        wanted = None if devices is None else set(devices)
        due = sorted(
            (item for item, until in outbox.values()
             if item.due_at <= now and until <= now
             and (wanted is None or item.device_id in wanted)),
            key=lambda i: i.due_at,
        )[:limit]  # fmt: skip
        for item in due:
            outbox[(item.device_id, item.chat_id)] = (item, now + lease_ms)
        return due

    def _held(self, item: OutboxItem) -> OutboxItem | None:
        held = self._t.outbox.get((item.device_id, item.chat_id))
        return held[0] if held and held[0].delivery_id == item.delivery_id else None

    async def done(self, item: OutboxItem) -> bool:
        if self._held(item) is None:
            return False
        del self._t.outbox[(item.device_id, item.chat_id)]
        return True

    async def retry_later(self, item: OutboxItem, attempts: int, due_at: int, error: str) -> bool:
        held = self._held(item)
        if held is None:
            return False
        changed = dataclasses.replace(held, attempts=attempts, due_at=due_at, last_error=error)
        self._t.outbox[(item.device_id, item.chat_id)] = (changed, 0)
        return True

    async def bury(self, item: OutboxItem, attempts: int, error: str, dead_at: int) -> bool:
        held = self._held(item)
        if held is None:
            return False
        del self._t.outbox[(item.device_id, item.chat_id)]
        dead = dataclasses.replace(held, attempts=attempts, last_error=error, due_at=dead_at)
        self._t.dead[item.delivery_id] = DeadItem(dead, dead_at)
        return True

    async def dead(self, limit: int, cursor: str = "") -> tuple[list[DeadItem], str | None]:
        ids = sorted(d for d in self._t.dead if d > cursor)
        page = [self._t.dead[d] for d in ids[:limit]]
        return page, (ids[limit - 1] if len(ids) > limit else None)

    async def revive(self, delivery_id: str, now: int) -> str | None:
        t = self._t
        dead = t.dead.pop(delivery_id, None)
        if dead is None:
            return None
        key = (dead.item.device_id, dead.item.chat_id)
        if key in t.outbox:
            return "superseded"
        t.outbox[key] = (dataclasses.replace(dead.item, due_at=now, attempts=0, last_error=""), 0)
        return "requeued"

    async def expire_dead(self, before: int) -> int:
        old = [d for d, dead in self._t.dead.items() if dead.dead_at < before]
        for delivery_id in old:
            del self._t.dead[delivery_id]
        return len(old)

    async def depth(self) -> int:
        return len(self._t.outbox)


class Audit(_Store):
    async def append(self, entry: AuditEntry) -> None:
        self._t.audit[(entry.time, entry.entry_id)] = entry

    async def page(self, limit: int, before: tuple[int, str] | None = None) -> list[AuditEntry]:
        keys = sorted((k for k in self._t.audit if before is None or k < before), reverse=True)
        return [self._t.audit[k] for k in keys[:limit]]


class Stats(_Store):
    async def totals(self) -> Totals:
        t = self._t
        messages = sum(chat.last_seq for chat in t.chats.values())
        return Totals(users=len(t.users), chats=len(t.chats), messages=messages)

    async def media_usage(self) -> MediaUsage:
        t = self._t
        return MediaUsage(
            files=len(t.media),
            bytes=sum(m.size for m in t.media.values()),
            unreferenced_files=sum(1 for m in t.media if not t.refs.get(m)),
        )


class Ciphertexts(_Store):
    async def between(
        self, device_id: str, chat_id: str, low_seq: int, high_seq: int
    ) -> dict[int, Ciphertext]:
        sealed = self._t.ciphertexts.get((device_id, chat_id), {})
        return {seq: c for seq, (c, _) in sealed.items() if low_seq <= seq <= high_seq}

    async def expire(self, before: int) -> int:
        removed = 0
        for sealed in self._t.ciphertexts.values():
            old = [seq for seq, (_, at) in sealed.items() if at < before]
            for seq in old:
                del sealed[seq]
            removed += len(old)
        return removed
