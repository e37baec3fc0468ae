"""``/groups``: create, read, rename, and manage members and admins."""

from __future__ import annotations

from aiohttp import web

from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response, read_json


async def create(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    return json_response(await svc.groups.create(who, await read_json(request)), 201)


async def get(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    return json_response(await svc.groups.get(who, request.match_info["group_id"]))


async def update(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    body = await read_json(request)
    return json_response(await svc.groups.update(who, request.match_info["group_id"], body))


async def add_members(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    body = await read_json(request)
    return json_response(await svc.groups.add_members(who, request.match_info["group_id"], body))


async def remove_member(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    group_id, user_id = request.match_info["group_id"], request.match_info["user_id"]
    return json_response(await svc.groups.remove_member(who, group_id, user_id))


async def set_role(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    group_id, user_id = request.match_info["group_id"], request.match_info["user_id"]
    body = await read_json(request)
    return json_response(await svc.groups.set_role(who, group_id, user_id, body))
