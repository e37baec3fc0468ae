"""Request bodies shared by the REST and WebSocket paths, so both send the same shape."""

from __future__ import annotations

import uuid
from typing import Any


def message_body(
    *,
    chat_id: str | None,
    recipient_id: str | None,
    content: str,
    type: str,
    client_msg_id: str | None,
    media_id: str | None,
    reply_to: str | None,
    encrypted: bool = False,
    ciphertexts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A send_message body shared by REST and WebSocket; None fields are left out."""
    body: dict[str, Any] = {}
    if chat_id is not None:
        body["chat_id"] = chat_id
    if recipient_id is not None:
        body["recipient_id"] = recipient_id
    body["content"] = content
    body["type"] = type
    body["client_msg_id"] = client_msg_id or str(uuid.uuid4())
    if media_id is not None:
        body["media_id"] = media_id
    if reply_to is not None:
        body["reply_to"] = reply_to
    if encrypted:
        body["encrypted"] = True
    if ciphertexts is not None:
        body["ciphertexts"] = ciphertexts
    return body
