"""What each record of the source becomes: the rows its write path would have left.

Every row is a ``Put``; max registers (watermarks, ``last_seq``, cursors) are
written with their value as write time, as ``marks.py`` does, everything else
with ``IMPORT_TS`` (see the package docstring).
"""

from __future__ import annotations

from collections.abc import Sequence

from chatd.core.models import Chat, Contact, Device, DeviceKeys, Media, Member, Message, User
from chatd.storage.scylla.common import bucket_of
from chatd.storage.scylla.groups import period_of
from chatd.storage.scylla.importer.tables import Put, put
from chatd.storage.scylla.media import hour_of, shas_of
from chatd.storage.scylla.users import prefix_of


def user_puts(u: User) -> list[Put]:
    name = u.username.lower()
    return [
        put(
            "users",
            user_id=u.user_id,
            username=name,
            display_name=u.display_name,
            password_hash=u.password_hash,
            created_at=u.created_at,
            status_message=u.status_message,
            avatar_media_id=u.avatar_media_id,
            is_admin=u.is_admin,
            banned=u.banned,
            last_seen=u.last_seen,
            group_add=u.group_add,
        ),
        put("usernames", username=name, user_id=u.user_id),
        put("users_by_prefix", prefix=prefix_of(name), username=name, user_id=u.user_id),
        put("user_prefixes", shard=0, prefix=prefix_of(name)),
    ]


def device_puts(d: Device, token_hash: str) -> list[Put]:
    common = {
        "name": d.name,
        "created_at": d.created_at,
        "expires_at": d.expires_at,
        "revoked_at": d.revoked_at,
    }
    return [
        put("devices", device_id=d.device_id, user_id=d.user_id, token_hash=token_hash, **common),
        put(
            "device_tokens",
            token_hash=token_hash,
            device_id=d.device_id,
            user_id=d.user_id,
            **common,
        ),
        put("user_devices", user_id=d.user_id, device_id=d.device_id, **common),
    ]


def contact_puts(c: Contact) -> list[Put]:
    return [
        put(
            "contacts",
            user_id=c.user_id,
            contact_id=c.contact_id,
            name=c.name,
            created_at=c.created_at,
        ),
        put("contact_watchers", contact_id=c.contact_id, user_id=c.user_id),
    ]


def invite_puts(code: str, uses_left: int, expires_at: int | None) -> list[Put]:
    return [put("invites", code=code, uses_left=uses_left, expires_at=expires_at)]


def chat_puts(chat: Chat, members: Sequence[Member], direct_key: str | None) -> list[Put]:
    """The chat partition (statics, members, watermarks), the members' inbox rows, and
    the direct pair or the group index."""
    cid = chat.chat_id
    puts = [
        put(
            "chat_members",
            static=True,
            chat_id=cid,
            kind=chat.kind,
            created_at=chat.created_at,
            title=chat.title,
            description=chat.description,
            avatar_media_id=chat.avatar_media_id,
            created_by=chat.created_by,
            version=chat.version,
        ),
        # max register: written as marks.last does
        put(
            "chat_members",
            chat.last_seq,
            static=True,
            chat_id=cid,
            last_seq=chat.last_seq,
            last_activity=chat.last_activity,
        ),
    ]
    pair: list[str] = []
    if chat.kind == "direct":
        if direct_key is None:
            raise ValueError(f"direct chat {cid} has no direct_key")
        pair = direct_key.split(":")
        puts.append(
            put(
                "direct_pairs",
                pair=direct_key,
                chat_id=cid,
                created_at=chat.created_at,
                created_by=chat.created_by,
                user_a=pair[0],
                user_b=pair[-1],
            )
        )
    else:
        period = period_of(cid)
        puts.append(put("group_index", period=period, chat_id=cid))
        puts.append(put("group_periods", shard=0, period=period))
    for m in members:
        puts.append(
            put(
                "chat_members",
                chat_id=cid,
                user_id=m.user_id,
                role=m.role,
                joined_at=m.joined_at,
                joined_seq=m.joined_seq,
                left_seq=m.left_seq,
            )
        )
        # max registers (marks.delivered / marks.read); 0 is what an absent cell reads as
        if m.delivered_seq:
            delivered = {"delivered_seq": m.delivered_seq}
            puts.append(
                put("chat_members", m.delivered_seq, chat_id=cid, user_id=m.user_id, **delivered)
            )
        if m.read_seq:
            read = {"read_seq": m.read_seq}
            puts.append(put("chat_members", m.read_seq, chat_id=cid, user_id=m.user_id, **read))
        if chat.kind == "direct":
            peer = pair[0] if m.user_id == pair[-1] else pair[-1]
            puts.append(
                put(
                    "user_chats",
                    user_id=m.user_id,
                    chat_id=cid,
                    kind="direct",
                    peer_id=peer if peer != m.user_id else None,
                )
            )
        else:
            puts.append(put("user_chats", user_id=m.user_id, chat_id=cid, kind="group"))
    return puts


def message_puts(m: Message) -> list[Put]:
    """The message row, its id index, its idempotency key (with its seq, as a finished
    append leaves it; system messages have none, as on the serving path) and its
    media reference."""
    puts = [
        put(
            "messages",
            chat_id=m.chat_id,
            bucket=bucket_of(m.seq),
            seq=m.seq,
            message_id=m.message_id,
            sender_id=m.sender_id,
            sender_device_id=m.sender_device_id,
            type=m.type,
            content=m.content,
            client_msg_id=m.client_msg_id,
            created_at=m.created_at,
            media_id=m.media_id,
            reply_to=m.reply_to,
            encrypted=m.encrypted or None,
        ),
        put("message_ids", message_id=m.message_id, chat_id=m.chat_id, seq=m.seq),
    ]
    if m.type != "system":
        puts.append(
            put(
                "msg_keys",
                sender_id=m.sender_id,
                client_msg_id=m.client_msg_id,
                owner="import",
                chat_id=m.chat_id,
                claimed_at=m.created_at,
                seq=m.seq,
                message_id=m.message_id,
            )
        )
    if m.media_id is not None:
        puts.append(
            put(
                "media_refs",
                media_id=m.media_id,
                message_id=m.message_id,
                chat_id=m.chat_id,
                seq=m.seq,
            )
        )
    return puts


def epoch_puts(chat_id: str, bucket: int, epoch: int, epoch_seq: int) -> list[Put]:
    """The bucket's membership fence (see sequencer.py)."""
    return [
        put(
            "messages",
            static=True,
            chat_id=chat_id,
            bucket=bucket,
            epoch=epoch,
            epoch_seq=epoch_seq,
        )
    ]


def cursor_puts(device_id: str, chat_id: str, delivered_seq: int) -> list[Put]:
    return [
        put(
            "device_cursors",
            delivered_seq,
            device_id=device_id,
            chat_id=chat_id,
            delivered_seq=delivered_seq,
        )
    ]


def media_puts(m: Media, referenced: bool) -> list[Put]:
    puts = [
        put(
            "media",
            media_id=m.media_id,
            uploader_id=m.uploader_id,
            sha256=m.sha256,
            mime_type=m.mime_type,
            size=m.size,
            created_at=m.created_at,
            filename=m.filename,
            width=m.width,
            height=m.height,
            duration_ms=m.duration_ms,
            thumbnail_sha256=m.thumbnail_sha256,
            thumbnail_mime=m.thumbnail_mime,
            thumbnail_size=m.thumbnail_size,
            referenced=referenced,
        )
    ]
    for sha in shas_of(m.sha256, m.thumbnail_sha256):
        puts.append(put("media_by_sha", sha256=sha, media_id=m.media_id))
    if not referenced:  # a retention candidate, as media.create lists it
        hour = hour_of(m.created_at)
        puts.append(
            put(
                "media_unreferenced",
                hour=hour,
                created_at=m.created_at,
                media_id=m.media_id,
                sha256=m.sha256,
                thumbnail_sha256=m.thumbnail_sha256,
            )
        )
        puts.append(put("media_unreferenced_hours", shard=0, hour=hour))
    return puts


def device_key_puts(k: DeviceKeys) -> list[Put]:
    device_id, user_id, identity, key_id, public, signature, updated = k.flat()
    return [
        put(
            "device_keys",
            device_id=device_id,
            user_id=user_id,
            identity_key=identity,
            signed_key_id=key_id,
            signed_public_key=public,
            signed_signature=signature,
            updated_at=updated,
        )
    ]


def prekey_puts(device_id: str, key_id: int, public_key: str) -> list[Put]:
    return [put("one_time_prekeys", device_id=device_id, key_id=key_id, public_key=public_key)]
