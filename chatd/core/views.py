"""Contract JSON for domain records: the one place that shapes what clients see."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from chatd.core.e2e import ciphertext_view
from chatd.core.ids import format_ts
from chatd.core.models import (
    Chat,
    Ciphertext,
    Contact,
    Device,
    DeviceKeys,
    Media,
    Member,
    Message,
    Prekey,
    User,
)

Status = Literal["sent", "delivered", "read"]


def user_view(user: User) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "username": user.username,
        "display_name": user.display_name,
        "status_message": user.status_message,
        "avatar_url": f"/api/v1/media/{user.avatar_media_id}" if user.avatar_media_id else None,
    }


def me_view(user: User) -> dict[str, Any]:
    return {
        **user_view(user),
        "avatar_media_id": user.avatar_media_id,
        "is_admin": user.is_admin,
        "group_add": user.group_add,
    }


def device_view(device: Device, *, current: str | None = None) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "name": device.name,
        "created_at": format_ts(device.created_at),
        "expires_at": format_ts(device.expires_at),
        "current": device.device_id == current,
    }


def contact_view(contact: Contact, user: User | None) -> dict[str, Any]:
    base = user_view(user) if user else {"user_id": contact.contact_id}
    return {**base, "name": contact.name, "added_at": format_ts(contact.created_at)}


def message_status(message: Message, members: Iterable[Member]) -> Status:
    """``delivered``/``read`` once every member but the sender reached the message.

    Only members who can see the message count: one who joined later or had left
    before it was sent is not waited for.
    """
    others = [m for m in members if m.user_id != message.sender_id and m.sees(message.seq)]
    if not others:
        return "sent"
    if all(m.read_seq >= message.seq for m in others):
        return "read"
    if all(m.delivered_seq >= message.seq for m in others):
        return "delivered"
    return "sent"


def media_view(media: Media) -> dict[str, Any]:
    """The contract's ``media`` object (in messages), plus the file name if one was given."""
    url = f"/api/v1/media/{media.media_id}"
    return {
        "media_id": media.media_id,
        "url": url,
        "thumbnail_url": f"{url}/thumbnail" if media.thumbnail_sha256 else None,
        "mime_type": media.mime_type,
        "size": media.size,
        "width": media.width,
        "height": media.height,
        "duration_ms": media.duration_ms,
        "filename": media.filename,
    }


def upload_view(media: Media) -> dict[str, Any]:
    """The answer to ``POST /media``: the media object with the served bytes' hash."""
    return {**media_view(media), "sha256": media.sha256}


def message_view(
    message: Message,
    status: Status = "sent",
    media: Media | None = None,
    ciphertext: Ciphertext | None = None,
) -> dict[str, Any]:
    """``media``: the record of ``message.media_id`` (None if it has none, or it is gone).

    ``encrypted`` is always there (an addition to the contract's object); an
    encrypted message also has ``ciphertext``, the reading device's own entry
    (null once acknowledged or expired, or for a device it was not sent to).
    """
    view = {
        "message_id": message.message_id,
        "chat_id": message.chat_id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "type": message.type,
        "content": message.content,
        "media": media_view(media) if media is not None else None,
        "reply_to": message.reply_to,
        "client_msg_id": message.client_msg_id,
        "timestamp": format_ts(message.created_at),
        "status": status,
        "encrypted": message.encrypted,
    }
    if message.encrypted:
        view["ciphertext"] = ciphertext_view(ciphertext)
    return view


def ack_view(message: Message) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "chat_id": message.chat_id,
        "seq": message.seq,
        "status": "sent",
        "timestamp": format_ts(message.created_at),
    }


def member_view(member: Member) -> dict[str, Any]:
    return {
        "user_id": member.user_id,
        "role": member.role,
        "joined_at": format_ts(member.joined_at),
    }


def visible_last_seq(chat: Chat, me: Member) -> int:
    """The newest seq ``me`` may see: the chat's last, or the one it left with."""
    return chat.last_seq if me.left_seq is None else min(chat.last_seq, me.left_seq)


def chat_view(
    chat: Chat,
    me: Member,
    members: list[Member],
    last_message: dict[str, Any] | None,
) -> dict[str, Any]:
    last_seq = visible_last_seq(chat, me)
    return {
        "chat_id": chat.chat_id,
        "kind": chat.kind,
        "title": chat.title,
        "members": [member_view(m) for m in members],
        "last_message": last_message,
        "last_seq": last_seq,
        "unread_count": max(0, last_seq - max(me.read_seq, me.joined_seq)),
        "read_seq": me.read_seq,
        "delivered_seq": me.delivered_seq,
        "is_member": me.left_seq is None,
    }


def group_view(chat: Chat, members: list[Member], max_members: int) -> dict[str, Any]:
    return {
        "group_id": chat.chat_id,
        "name": chat.title,
        "description": chat.description,
        "avatar_url": f"/api/v1/media/{chat.avatar_media_id}" if chat.avatar_media_id else None,
        "members": [member_view(m) for m in members],
        "created_at": format_ts(chat.created_at),
        "created_by": chat.created_by,
        "max_members": max_members,
    }


def key_bundle_view(keys: DeviceKeys, one_time: Prekey | None) -> dict[str, Any]:
    signed = keys.signed_prekey
    return {
        "device_id": keys.device_id,
        "identity_key": keys.identity_key,
        "signed_prekey": {
            "key_id": signed.key_id,
            "public_key": signed.public_key,
            "signature": signed.signature,
        },
        "one_time_prekey": (
            {"key_id": one_time.key_id, "public_key": one_time.public_key} if one_time else None
        ),
    }
