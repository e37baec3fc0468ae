"""``/auth``: register, login, logout."""

from __future__ import annotations

from aiohttp import web

from chatd.core.ids import format_ts
from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response, no_content, read_json


async def register(request: web.Request) -> web.Response:
    user = await services(request).accounts.register(await read_json(request))
    return json_response({"user_id": user.user_id, "username": user.username}, 201)


async def login(request: web.Request) -> web.Response:
    token, device = await services(request).accounts.login(await read_json(request))
    return json_response(
        {
            "token": token,
            "user_id": device.user_id,
            "device_id": device.device_id,
            "expires_at": format_ts(device.expires_at),
        }
    )


async def logout(request: web.Request) -> web.Response:
    await services(request).accounts.logout(await caller(request))
    return no_content()
