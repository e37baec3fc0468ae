"""``/keys``: end-to-end encryption key bundles (public keys only)."""

from __future__ import annotations

from aiohttp import web

from chatd.core.views import key_bundle_view
from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response, read_json


async def upload(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    held = await svc.keys.upload(who, await read_json(request))
    return json_response({"one_time_prekeys": held})


async def fetch(request: web.Request) -> web.Response:
    svc = services(request)
    bundles = await svc.keys.fetch(await caller(request), request.match_info["user_id"])
    return json_response({"devices": [key_bundle_view(b.keys, b.one_time_prekey) for b in bundles]})


async def count(request: web.Request) -> web.Response:
    svc = services(request)
    return json_response({"one_time_prekeys": await svc.keys.count(await caller(request))})
