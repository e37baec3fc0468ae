"""The admin console's only way to the server: the contract's admin REST API.

A thin async layer over ``chatd.client.ChatdClient.request``. Every failure comes
out as an ``AdminError`` whose text is fit for the screen (the contract's error
``message``, or a sentence about the network), so no screen ever shows a traceback.
``NotAvailable`` marks an endpoint this server does not have (404 on a route the
contract lists but a server may not carry yet: the push outbox, the cluster view,
the live feed).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import orjson

from chatd.client import ApiError, ChatdClient

T = TypeVar("T")

#: Words for a refusal whose body carried no message.
_CODE_WORDS = {
    "bad_request": "the server refused the request as malformed",
    "unauthorized": "the token is invalid, expired or revoked: log in again",
    "forbidden": "this account is not a server admin",
    "not_found": "no such item (it may have been removed)",
    "conflict": "that conflicts with the server's current state",
    "rate_limited": "too many requests: wait a moment and try again",
    "unavailable": "the server's storage is unavailable: try again later",
}


class AdminError(Exception):
    """A failure in words: ``str(error)`` is what the screen shows."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class NotAvailable(AdminError):
    """The server has no such endpoint (it answered 404 for the route itself)."""


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _words(exc: ApiError) -> str:
    """The contract's ``message``, else a sentence for its code."""
    if exc.message:
        return exc.message
    return _CODE_WORDS.get(exc.code, f"the server answered {exc.status or exc.code}")


class AdminApi:
    """One admin's authenticated view of one server.

    The HTTP session is created on first use inside the running loop and closed by
    ``aclose``; one instance belongs to one event loop.
    """

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.client = ChatdClient(base_url, token=token)

    @property
    def base_url(self) -> str:
        return self.client.base_url

    @property
    def token(self) -> str | None:
        return self.client.token

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _call(self, call: Awaitable[T], *, optional: bool = False) -> T:
        """Await ``call``, turning every failure into an AdminError in words.

        ``optional``: a 404 means the server lacks the endpoint -> NotAvailable.
        """
        try:
            return await call
        except ApiError as exc:
            if optional and exc.status == 404:
                raise NotAvailable(
                    "not available on this server", code=exc.code, status=404
                ) from None
            raise AdminError(_words(exc), code=exc.code, status=exc.status) from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error)
            raise AdminError(f"cannot reach {self.base_url}: {reason}") from None
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            raise AdminError(
                f"the server did not answer properly: {exc or type(exc).__name__}"
            ) from None

    async def _get(self, path: str, *, optional: bool = False, **params: Any) -> Any:
        return await self._call(self.client.request("GET", path, params=params), optional=optional)

    async def _send(self, method: str, path: str, body: Any = None) -> Any:
        return await self._call(self.client.request(method, path, json=body))

    # -- signing in ----------------------------------------------------------------

    async def login(self, username: str, password: str) -> None:
        """Log in as a new device named "chatd admin"; keeps the token."""
        await self._call(self.client.login(username, password, device_name="chatd admin"))

    async def logout(self) -> None:
        await self._call(self.client.logout())

    async def check_admin(self) -> dict[str, Any]:
        """The server's stats, or an AdminError saying why this token may not administer."""
        try:
            return await self.stats()
        except AdminError as exc:
            if exc.code == "forbidden":
                raise AdminError(
                    f"forbidden: this account is not an admin of {self.base_url}",
                    code="forbidden",
                    status=exc.status,
                ) from None
            raise

    # -- reading -------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        return await self._get("/admin/stats")

    async def users(
        self, q: str = "", *, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """``{users, next_cursor}``: one page of users whose name starts with ``q``."""
        return await self._get("/admin/users", q=q or None, cursor=cursor, limit=limit)

    async def user(self, user_id: str) -> dict[str, Any]:
        return await self._get(f"/admin/users/{_seg(user_id)}")

    async def groups(
        self, q: str = "", *, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        return await self._get("/admin/groups", q=q or None, cursor=cursor, limit=limit)

    async def group(self, group_id: str) -> dict[str, Any]:
        return await self._get(f"/admin/groups/{_seg(group_id)}")

    async def push(self, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """``{outbox_depth, dead, next_cursor}``; NotAvailable on a server without push."""
        return await self._get("/admin/push", optional=True, cursor=cursor, limit=limit)

    async def media(self) -> dict[str, Any]:
        return await self._get("/admin/media")

    async def audit(self, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return await self._get("/admin/audit", cursor=cursor, limit=limit)

    async def cluster(self) -> dict[str, Any]:
        """``{node_id, nodes}``; NotAvailable on a server without the cluster view."""
        return await self._get("/cluster", optional=True)

    # -- changing --------------------------------------------------------------------

    async def ban(self, user_id: str) -> None:
        await self._send("POST", f"/admin/users/{_seg(user_id)}/ban")

    async def unban(self, user_id: str) -> None:
        await self._send("POST", f"/admin/users/{_seg(user_id)}/unban")

    async def set_password(self, user_id: str, password: str) -> None:
        await self._send("PUT", f"/admin/users/{_seg(user_id)}/password", {"password": password})

    async def set_admin(self, user_id: str, is_admin: bool) -> dict[str, Any]:
        return await self._send("PATCH", f"/admin/users/{_seg(user_id)}", {"is_admin": is_admin})

    async def revoke_device(self, user_id: str, device_id: str) -> None:
        await self._send("DELETE", f"/admin/users/{_seg(user_id)}/devices/{_seg(device_id)}")

    async def create_invite(self, uses: int, expires_in_s: int) -> dict[str, Any]:
        """``{code, uses, expires_at}``: a code for ``registration = "invite"``."""
        body = {"uses": uses, "expires_in_s": expires_in_s}
        return await self._send("POST", "/admin/invites", body)

    async def retry_push(self, item_id: str) -> None:
        await self._send("POST", f"/admin/push/{_seg(item_id)}/retry")

    # -- the live feed ---------------------------------------------------------------

    async def live(self) -> AsyncIterator[dict[str, Any]]:
        """The frames of ``GET /admin/live`` (``{type, data}``) until the socket ends.

        NotAvailable when the server has no live feed; AdminError for any other failure.
        """
        url = self.client.api_url + "/admin/live"
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            ws = await self.client._http().ws_connect(url, headers=headers, heartbeat=20)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 404:
                raise NotAvailable("not available on this server", status=404) from None
            words = _CODE_WORDS.get(
                {401: "unauthorized", 403: "forbidden"}.get(exc.status, ""), exc.message
            )
            raise AdminError(f"live feed refused: {words}", status=exc.status) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AdminError(f"cannot reach the live feed: {exc or type(exc).__name__}") from None
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                with contextlib.suppress(orjson.JSONDecodeError):
                    frame = orjson.loads(msg.data)
                    if isinstance(frame, dict):
                        yield frame
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise AdminError(f"live feed lost: {exc or type(exc).__name__}") from None
        finally:
            await ws.close()


__all__ = ["AdminApi", "AdminError", "NotAvailable"]
