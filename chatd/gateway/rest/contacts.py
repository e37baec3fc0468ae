"""``/contacts``: the users whose presence the caller follows."""

from __future__ import annotations

from aiohttp import web

from chatd.core.views import contact_view
from chatd.gateway.context import services
from chatd.gateway.http import caller, json_response, no_content, read_json


async def list_contacts(request: web.Request) -> web.Response:
    svc = services(request)
    pairs = await svc.contacts.list(await caller(request))
    return json_response({"contacts": [contact_view(c, u) for c, u in pairs]})


async def put_contact(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    body = await read_json(request, optional=True)
    contact, user = await svc.contacts.put(who, request.match_info["user_id"], body)
    return json_response(contact_view(contact, user))


async def delete_contact(request: web.Request) -> web.Response:
    svc = services(request)
    await svc.contacts.delete(await caller(request), request.match_info["user_id"])
    return no_content()
