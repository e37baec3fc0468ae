"""``/admin``: server administration, for admins only.

Who may call is checked once, by ``admin_only`` (a middleware over every path
under ``/api/v1/admin``, the ``/admin/live`` WebSocket included): no token is
``unauthorized``, anyone but an admin ``forbidden``. Handlers read the checked
caller with ``acting``; each parses, calls ``AdminService`` and answers.
"""

from __future__ import annotations

from aiohttp import web

from chatd.core.auth import Caller
from chatd.core.errors import ChatdError
from chatd.core.services.admin import Page
from chatd.gateway.context import services
from chatd.gateway.errors import Handler
from chatd.gateway.http import bearer_token, json_response, no_content, read_json

PREFIX = "/api/v1/admin"
LIVE = f"{PREFIX}/live"
ADMIN = web.RequestKey("admin", Caller)


@web.middleware
async def admin_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path == PREFIX or path.startswith(PREFIX + "/"):
        token = bearer_token(request)
        if token is None and path == LIVE:  # browsers cannot set headers on a WebSocket
            token = request.query.get("token")
        who = await services(request).accounts.authenticate(token)
        if not who.is_admin:
            raise ChatdError("forbidden", "administrators only")
        request[ADMIN] = who
    return await handler(request)


def acting(request: web.Request) -> str:
    """The user id of the admin making the request (checked by ``admin_only``)."""
    return request[ADMIN].user_id


def _page(key: str, page: Page) -> web.Response:
    return json_response({key: page.items, "next_cursor": page.next_cursor})


async def stats(request: web.Request) -> web.Response:
    return json_response(await services(request).stats.snapshot())


async def users(request: web.Request) -> web.Response:
    return _page("users", await services(request).admin.users(request.query))


async def user(request: web.Request) -> web.Response:
    return json_response(await services(request).admin.user(request.match_info["user_id"]))


async def update_user(request: web.Request) -> web.Response:
    admin = services(request).admin
    body = await read_json(request)
    return json_response(
        await admin.update_user(acting(request), request.match_info["user_id"], body)
    )


async def ban(request: web.Request) -> web.Response:
    await services(request).admin.ban(acting(request), request.match_info["user_id"])
    return no_content()


async def unban(request: web.Request) -> web.Response:
    await services(request).admin.unban(acting(request), request.match_info["user_id"])
    return no_content()


async def set_password(request: web.Request) -> web.Response:
    admin = services(request).admin
    body = await read_json(request)
    await admin.set_password(acting(request), request.match_info["user_id"], body)
    return no_content()


async def revoke_device(request: web.Request) -> web.Response:
    match = request.match_info
    await services(request).admin.revoke_device(
        acting(request), match["user_id"], match["device_id"]
    )
    return no_content()


async def create_invite(request: web.Request) -> web.Response:
    admin = services(request).admin
    body = await read_json(request, optional=True)
    return json_response(await admin.create_invite(acting(request), body), 201)


async def groups(request: web.Request) -> web.Response:
    return _page("groups", await services(request).admin.groups(request.query))


async def group(request: web.Request) -> web.Response:
    return json_response(await services(request).admin.group(request.match_info["group_id"]))


async def media(request: web.Request) -> web.Response:
    return json_response(await services(request).admin.media())


async def audit(request: web.Request) -> web.Response:
    return _page("entries", await services(request).admin.audit(request.query))


async def push(request: web.Request) -> web.Response:
    return json_response(await services(request).admin.push(request.query))


async def retry_push(request: web.Request) -> web.Response:
    await services(request).admin.retry_push(acting(request), request.match_info["id"])
    return no_content()
