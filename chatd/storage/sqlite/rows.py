"""The SQLite tables as chatd's records: one column list per table, one row -> record.

The stores select these lists and build records with these functions;
``chatd migrate`` reads the same tables through them, so a column added to a
table is added in one place. Tables that store a record field for field take
their column list from the record itself (``columns``).
"""

from __future__ import annotations

from typing import Any

from chatd.core.models import (
    Chat,
    Contact,
    Device,
    DeviceKeys,
    Media,
    Member,
    Message,
    User,
    columns,
)

Row = tuple[Any, ...]

USER_COLUMNS = columns(User)
DEVICE_COLUMNS = columns(Device)  # the table also holds token_hash
CONTACT_COLUMNS = columns(Contact)
CHAT_COLUMNS = columns(Chat)  # the table also holds direct_key
MEMBER_COLUMNS = columns(Member)
MESSAGE_COLUMNS = columns(Message)
MEDIA_COLUMNS = columns(Media)  # the table also holds referenced
#: ``DeviceKeys.flat()`` order.
KEY_COLUMNS = (
    "device_id, user_id, identity_key, signed_key_id, signed_public_key, signed_signature, "
    "updated_at"
)


def width(column_list: str) -> int:
    return column_list.count(",") + 1


def placeholders(column_list: str) -> str:
    """``?,?,...``: one parameter per column of ``column_list``."""
    return ",".join("?" * width(column_list))


# A row may carry more columns after the record's (a source read adds direct_key...).
_DEVICE, _CONTACT, _CHAT, _MEMBER, _MESSAGE, _MEDIA = (
    width(c)
    for c in (
        DEVICE_COLUMNS,
        CONTACT_COLUMNS,
        CHAT_COLUMNS,
        MEMBER_COLUMNS,
        MESSAGE_COLUMNS,
        MEDIA_COLUMNS,
    )
)


def user_of(row: Row) -> User:
    return User(
        *row[:7], is_admin=bool(row[7]), banned=bool(row[8]), last_seen=row[9], group_add=row[10]
    )


def user_row(user: User) -> Row:
    return (
        user.user_id,
        user.username.lower(),
        user.display_name,
        user.password_hash,
        user.created_at,
        user.status_message,
        user.avatar_media_id,
        int(user.is_admin),
        int(user.banned),
        user.last_seen,
        user.group_add,
    )


def device_of(row: Row) -> Device:
    return Device(*row[:_DEVICE])


def contact_of(row: Row) -> Contact:
    return Contact(*row[:_CONTACT])


def chat_of(row: Row) -> Chat:
    return Chat(*row[:_CHAT])


def member_of(row: Row) -> Member:
    return Member(*row[:_MEMBER])


def message_of(row: Row) -> Message:
    return Message(*row[: _MESSAGE - 1], encrypted=bool(row[_MESSAGE - 1]))


def message_row(m: Message) -> Row:
    return (
        m.message_id,
        m.chat_id,
        m.seq,
        m.sender_id,
        m.sender_device_id,
        m.type,
        m.content,
        m.client_msg_id,
        m.created_at,
        m.media_id,
        m.reply_to,
        int(m.encrypted),
    )


def media_of(row: Row) -> Media:
    return Media(*row[:_MEDIA])


def media_row(media: Media) -> Row:
    return (
        media.media_id,
        media.uploader_id,
        media.sha256,
        media.mime_type,
        media.size,
        media.created_at,
        media.filename,
        media.width,
        media.height,
        media.duration_ms,
        media.thumbnail_sha256,
        media.thumbnail_mime,
        media.thumbnail_size,
    )


def keys_of(row: Row) -> DeviceKeys:
    return DeviceKeys.from_flat(row)
