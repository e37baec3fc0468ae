"""``/chats``: direct chats, the inbox, history and read markers."""

from __future__ import annotations

from aiohttp import web

from chatd.core import validate
from chatd.core.views import member_view
from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response, no_content, read_json


async def open_direct(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    body = validate.body(await read_json(request))
    user_id = validate.required_string(body, "user_id", max_len=64)
    chat, created = await svc.chats.open_direct(who, user_id)
    _, _, members = await svc.chats.access(who, chat.chat_id)
    return json_response(
        {"chat_id": chat.chat_id, "kind": chat.kind, "members": [member_view(m) for m in members]},
        201 if created else 200,
    )


async def list_chats(request: web.Request) -> web.Response:
    svc = services(request)
    return json_response(await svc.chats.inbox(await caller(request), request.query))


async def get_chat(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    return json_response(await svc.chats.chat_view(who, request.match_info["chat_id"]))


async def history(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    page = await svc.chats.history(who, request.match_info["chat_id"], request.query)
    return json_response(page)


async def mark_read(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    await svc.receipts.mark_read(who, request.match_info["chat_id"], await read_json(request))
    return no_content()
