"""``/auth``: register, login, logout."""

from __future__ import annotations

from aiohttp import web

from chatd.core.ids import format_ts
from chatd.gateway.context import services
from chatd.gateway.http import bearer_token, caller, json_response, no_content, read_json


async def register(request: web.Request) -> web.Response:
    svc = services(request)
    body = await read_json(request)
    user = await svc.accounts.register(body, address=svc.addresses.of(request))
    return json_response({"user_id": user.user_id, "username": user.username}, 201)


async def login(request: web.Request) -> web.Response:
    svc = services(request)
    body = await read_json(request)
    token, device = await svc.accounts.login(
        body, address=svc.addresses.of(request), token=bearer_token(request)
    )
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
