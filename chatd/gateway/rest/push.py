"""``/devices/{device_id}/push``: where a device's push notifications go."""

from __future__ import annotations

from aiohttp import web

from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response, no_content, read_json


async def put_target(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    await svc.push.set_target(who, request.match_info["device_id"], await read_json(request))
    return no_content()


async def get_target(request: web.Request) -> web.Response:
    svc = services(request)
    target = await svc.push.get_target(await caller(request), request.match_info["device_id"])
    return json_response(target)


async def delete_target(request: web.Request) -> web.Response:
    svc = services(request)
    await svc.push.delete_target(await caller(request), request.match_info["device_id"])
    return no_content()
