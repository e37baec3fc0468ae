"""``/users``: profiles, search and presence status."""

from __future__ import annotations

from aiohttp import web

from chatd.core.views import me_view, user_view
from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response, read_json


async def get_me(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    return json_response(me_view(await svc.accounts.get_user(who.user_id)))


async def patch_me(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    return json_response(me_view(await svc.accounts.update_me(who, await read_json(request))))


async def get_user(request: web.Request) -> web.Response:
    svc = services(request)
    await caller(request)
    return json_response(user_view(await svc.accounts.get_user(request.match_info["user_id"])))


async def search(request: web.Request) -> web.Response:
    svc = services(request)
    await caller(request)
    users = await svc.accounts.search(request.query)
    return json_response({"users": [user_view(u) for u in users]})


async def status(request: web.Request) -> web.Response:
    svc = services(request)
    await caller(request)
    return json_response(await svc.presence.status(request.match_info["user_id"]))
