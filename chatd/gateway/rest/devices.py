"""``/devices``: the caller's logged-in devices."""

from __future__ import annotations

from aiohttp import web

from chatd.core.views import device_view
from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response, no_content


async def list_devices(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    devices = await svc.accounts.devices(who)
    return json_response({"devices": [device_view(d, current=who.device_id) for d in devices]})


async def delete_device(request: web.Request) -> web.Response:
    svc = services(request)
    await svc.accounts.revoke_device(await caller(request), request.match_info["device_id"])
    return no_content()
