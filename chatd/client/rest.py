"""REST client for the chatd v1 contract: one instance is one logged-in device.

Every method is a thin, typed wrapper over ``request``; anything the wrappers do not
cover (admin routes, malformed bodies in tests) goes through ``request`` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from chatd.client.bodies import message_body
from chatd.client.errors import error_from_response
from chatd.client.ws import WsSession

API_PREFIX = "/api/v1"
_DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)


def _seg(value: str) -> str:
    """Quote one path segment, so an opaque id can never change the route."""
    return quote(str(value), safe="")


def _query(params: dict[str, Any] | None) -> dict[str, str] | None:
    """Drop None values and spell booleans as the server expects."""
    if not params:
        return None
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _items(body: Any, key: str) -> list[dict[str, Any]]:
    """The list in an ``{key: [...]}`` envelope; a bare list is accepted too."""
    if isinstance(body, list):
        return body
    return body[key]


class ChatdClient:
    """REST client; one instance = one logged-in device.

    ``login`` stores ``token``, ``user_id`` and ``device_id``; every later call (and
    every WebSocket session from ``connect``) authenticates with that token. A
    ``session`` passed in is shared and never closed here; each open WebSocket holds
    one of its connections, so a session shared by many sockets needs a connector
    without a limit (``aiohttp.TCPConnector(limit=0)``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_url = self.base_url + API_PREFIX
        self.token = token
        self.user_id: str | None = None
        self.device_id: str | None = None
        self._session = session
        self._own_session = session is None
        self._ws_sessions: set[WsSession] = set()

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint: the base URL with a ws/wss scheme, plus ``/ws``."""
        if self.base_url.startswith("https://"):
            return "wss://" + self.base_url[len("https://") :] + "/ws"
        if self.base_url.startswith("http://"):
            return "ws://" + self.base_url[len("http://") :] + "/ws"
        return self.base_url + "/ws"

    def _http(self) -> aiohttp.ClientSession:
        """The HTTP session, created on first use (inside the running loop)."""
        if self._session is None or (self._own_session and self._session.closed):
            self._session = aiohttp.ClientSession(timeout=_DEFAULT_TIMEOUT)
        return self._session

    async def aclose(self) -> None:
        """Close every open WsSession and the HTTP session this client created."""
        for ws in list(self._ws_sessions):
            await ws.close()
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> ChatdClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- transport ---------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        data: Any = None,
        auth: bool = True,
        raw: bool = False,
    ) -> Any:
        """Call ``/api/v1{path}``; return the decoded body, None for 204 or an empty body.

        JSON bodies are decoded, ``text/*`` comes back as str, anything else (or any
        body when ``raw``) as bytes. Any non-2xx status raises ApiError with the
        contract's code and message, whatever ``raw`` says.
        """
        hdrs: dict[str, str] = {}
        if auth and self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        if json is not None:
            data = orjson.dumps(json)
            hdrs["Content-Type"] = "application/json"
        if headers:
            hdrs.update(headers)
        async with self._http().request(
            method, self.api_url + path, params=_query(params), data=data, headers=hdrs
        ) as resp:
            body = await resp.read()
            if not 200 <= resp.status < 300:
                raise error_from_response(resp.status, body, resp.headers)
            if raw:
                return body
            if resp.status == 204 or not body:
                return None
            ctype = resp.content_type
            if ctype == "application/json" or ctype.endswith("+json"):
                return orjson.loads(body)
            if ctype.startswith("text/"):
                return body.decode(resp.charset or "utf-8", "replace")
            return body

    # -- accounts and devices ----------------------------------------------------

    async def register(
        self,
        username: str,
        password: str,
        *,
        display_name: str | None = None,
        invite_code: str | None = None,
    ) -> dict[str, Any]:
        """Create an account -> ``{user_id, username}``; does not log in."""
        body: dict[str, Any] = {"username": username, "password": password}
        if display_name is not None:
            body["display_name"] = display_name
        if invite_code is not None:
            body["invite_code"] = invite_code
        return await self.request("POST", "/auth/register", json=body, auth=False)

    async def login(
        self, username: str, password: str, *, device_name: str | None = None
    ) -> dict[str, Any]:
        """Log in as a new device; keeps ``token``, ``user_id`` and ``device_id``.

        A token this client still holds goes along: if it is the same user's,
        the server lets the login past the per-username lockout (a device the
        owner already has is not a password guesser).
        """
        body: dict[str, Any] = {"username": username, "password": password}
        if device_name is not None:
            body["device_name"] = device_name
        result = await self.request("POST", "/auth/login", json=body)
        self.token = result["token"]
        self.user_id = result["user_id"]
        self.device_id = result["device_id"]
        return result

    async def logout(self) -> None:
        """Revoke this device's token and forget it (``user_id`` is kept for reference)."""
        await self.request("POST", "/auth/logout")
        self.token = None
        self.device_id = None

    async def me(self) -> dict[str, Any]:
        return await self.request("GET", "/users/me")

    async def update_me(self, **fields: Any) -> dict[str, Any]:
        """PATCH the caller's profile (display_name, status_message, avatar_media_id, group_add)."""
        return await self.request("PATCH", "/users/me", json=fields)

    async def get_user(self, user_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/users/{_seg(user_id)}")

    async def search_users(self, q: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """Username prefix search."""
        body = await self.request("GET", "/users", params={"q": q, "limit": limit})
        return _items(body, "users")

    async def user_status(self, user_id: str) -> dict[str, Any]:
        """``{user_id, status: "online"|"offline", last_seen}``."""
        return await self.request("GET", f"/users/{_seg(user_id)}/status")

    async def contacts(self) -> list[dict[str, Any]]:
        return _items(await self.request("GET", "/contacts"), "contacts")

    async def add_contact(self, user_id: str, *, name: str | None = None) -> dict[str, Any] | None:
        body = {"name": name} if name is not None else {}
        return await self.request("PUT", f"/contacts/{_seg(user_id)}", json=body)

    async def remove_contact(self, user_id: str) -> None:
        await self.request("DELETE", f"/contacts/{_seg(user_id)}")

    async def devices(self) -> list[dict[str, Any]]:
        """The caller's own devices."""
        return _items(await self.request("GET", "/devices"), "devices")

    async def revoke_device(self, device_id: str) -> None:
        await self.request("DELETE", f"/devices/{_seg(device_id)}")

    async def set_push(self, device_id: str, provider: str, **fields: Any) -> Any:
        """Register where a device's notifications go (token, endpoint, keys per provider)."""
        body = {"provider": provider, **fields}
        return await self.request("PUT", f"/devices/{_seg(device_id)}/push", json=body)

    async def delete_push(self, device_id: str) -> None:
        await self.request("DELETE", f"/devices/{_seg(device_id)}/push")

    # -- chats and messages ------------------------------------------------------

    async def open_direct(self, user_id: str) -> dict[str, Any]:
        """Get or create the one direct chat with ``user_id``."""
        return await self.request("POST", "/chats/direct", json={"user_id": user_id})

    async def send_message(
        self,
        *,
        chat_id: str | None = None,
        recipient_id: str | None = None,
        content: str = "",
        type: str = "text",
        client_msg_id: str | None = None,
        media_id: str | None = None,
        reply_to: str | None = None,
        encrypted: bool = False,
        ciphertexts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST /messages -> ``{message_id, chat_id, seq, status, timestamp}``.

        A fresh uuid4 ``client_msg_id`` is generated when none is given; passing the
        same one again is the contract's idempotent retry.
        """
        body = message_body(
            chat_id=chat_id,
            recipient_id=recipient_id,
            content=content,
            type=type,
            client_msg_id=client_msg_id,
            media_id=media_id,
            reply_to=reply_to,
            encrypted=encrypted,
            ciphertexts=ciphertexts,
        )
        return await self.request("POST", "/messages", json=body)

    async def chats(self, *, page_size: int = 500) -> list[dict[str, Any]]:
        """All the caller's chats, most recent activity first, page after page.

        The server's cursor never repeats a chat; one that got a message while
        the pages were read may be missing (it arrives as a ``new_message``).
        """
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.chats_page(limit=page_size, cursor=cursor)
            found += page["chats"]
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    async def chats_page(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page: ``{chats, next_cursor}`` (null at the end)."""
        return await self.request("GET", "/chats", params={"limit": limit, "cursor": cursor})

    async def messages(
        self,
        chat_id: str,
        *,
        limit: int | None = None,
        before: str | None = None,
        after_seq: int | None = None,
    ) -> dict[str, Any]:
        """``{messages, next_cursor}``: newest first, or oldest first with ``after_seq``."""
        params = {"limit": limit, "before": before, "after_seq": after_seq}
        return await self.request("GET", f"/chats/{_seg(chat_id)}/messages", params=params)

    async def mark_read(self, chat_id: str, seq: int) -> None:
        """Read watermark up to ``seq``; same effect as a read_receipt frame."""
        await self.request("POST", f"/chats/{_seg(chat_id)}/read", json={"seq": seq})

    # -- groups ------------------------------------------------------------------

    async def create_group(
        self, name: str, member_ids: list[str], *, description: str | None = None
    ) -> dict[str, Any]:
        """Create a group with the caller as admin -> ``{group_id, name, members, ...}``."""
        body: dict[str, Any] = {"name": name, "member_ids": member_ids}
        if description is not None:
            body["description"] = description
        return await self.request("POST", "/groups", json=body)

    async def get_group(self, group_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/groups/{_seg(group_id)}")

    async def update_group(self, group_id: str, **fields: Any) -> Any:
        """PATCH name, description or avatar_media_id (admins only)."""
        return await self.request("PATCH", f"/groups/{_seg(group_id)}", json=fields)

    async def add_members(self, group_id: str, user_ids: list[str]) -> Any:
        """Add members (admins); all or nothing when ``max_members`` would be exceeded."""
        return await self.request(
            "POST", f"/groups/{_seg(group_id)}/members", json={"user_ids": user_ids}
        )

    async def remove_member(self, group_id: str, user_id: str) -> None:
        """Remove a member (admins), or leave the group when ``user_id`` is the caller."""
        await self.request("DELETE", f"/groups/{_seg(group_id)}/members/{_seg(user_id)}")

    async def set_member_role(self, group_id: str, user_id: str, role: str) -> Any:
        return await self.request(
            "PATCH", f"/groups/{_seg(group_id)}/members/{_seg(user_id)}", json={"role": role}
        )

    # -- media -------------------------------------------------------------------

    async def upload_media(
        self,
        data: Any,
        content_type: str = "application/octet-stream",
        *,
        filename: str | None = None,
        multipart: bool = False,
    ) -> dict[str, Any]:
        """Upload -> ``{media_id, url, thumbnail_url, mime_type, size, sha256, ...}``.

        ``data``: bytes, a file or an async iterator of bytes (streamed). A raw body,
        or with ``multipart`` a form with a ``file`` part. The server judges the type
        from the bytes; ``content_type`` only tells text formats apart.
        """
        if multipart:
            form = aiohttp.FormData()
            form.add_field("file", data, content_type=content_type, filename=filename or "file")
            return await self.request("POST", "/media", data=form)
        params = {"filename": filename} if filename else None
        return await self.request(
            "POST", "/media", data=data, params=params, headers={"Content-Type": content_type}
        )

    async def download_media(
        self, media_id: str, *, thumbnail: bool = False, byte_range: str | None = None
    ) -> bytes:
        """The file's bytes (or the thumbnail's); ``byte_range`` is a Range header value."""
        path = f"/media/{_seg(media_id)}" + ("/thumbnail" if thumbnail else "")
        headers = {"Range": byte_range} if byte_range is not None else None
        return await self.request("GET", path, headers=headers, raw=True)

    # -- end-to-end encryption keys ----------------------------------------------

    async def upload_keys(
        self,
        identity_key: str,
        signed_prekey: dict[str, Any],
        one_time_prekeys: list[dict[str, Any]],
    ) -> Any:
        """Upload (or top up) this device's prekey bundle; keys are base64 strings."""
        body = {
            "identity_key": identity_key,
            "signed_prekey": signed_prekey,
            "one_time_prekeys": one_time_prekeys,
        }
        return await self.request("PUT", "/keys", json=body)

    async def get_keys(self, user_id: str) -> list[dict[str, Any]]:
        """One bundle per device of ``user_id``; each one-time prekey is handed out once."""
        return _items(await self.request("GET", f"/keys/{_seg(user_id)}"), "devices")

    async def key_count(self) -> int:
        """How many one-time prekeys the server still holds for this device."""
        body = await self.request("GET", "/keys/count")
        return int(body["one_time_prekeys"])

    # -- operations ----------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``{status, node_id, version, uptime_s, connections}``; needs no token."""
        return await self.request("GET", "/health", auth=False)

    async def cluster(self) -> dict[str, Any]:
        """``{node_id, nodes: [{node_id, address, status, connections, joined_at}]}``
        as the answering node sees the cluster; admins only."""
        return await self.request("GET", "/cluster")

    async def metrics(self) -> str:
        """The Prometheus text exposition; needs no token."""
        body = await self.request("GET", "/metrics", auth=False, raw=True)
        return body.decode("utf-8", "replace")

    # -- WebSocket -----------------------------------------------------------------

    def connect(
        self,
        *,
        auto_delivery_receipts: bool = True,
        reconnect: bool = True,
        dedupe: bool = False,
        origin: str | None = None,
        ping_interval: float | None = None,
        token_in_query: bool = False,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> WsSession:
        """A WebSocket session for this device; ``async with`` it (or ``await .open()``).

        Opening waits for the server's hello; a handshake refused with HTTP 401/403
        raises ApiError with that status. ``token_in_query`` sends ``?token=`` instead
        of the Authorization header (the browser path). ``on_event``, when given, is
        called with each event frame instead of queuing it (for benchmarks).
        """
        return WsSession(
            self,
            auto_delivery_receipts=auto_delivery_receipts,
            reconnect=reconnect,
            dedupe=dedupe,
            origin=origin,
            ping_interval=ping_interval,
            token_in_query=token_in_query,
            on_event=on_event,
        )
