"""The whole route table of chatd, in one list."""

from __future__ import annotations

from aiohttp import web

from chatd.gateway import ws
from chatd.gateway.rest import (
    auth,
    chats,
    cluster,
    contacts,
    devices,
    groups,
    keys,
    media,
    messages,
    ops,
    push,
    users,
)

API = "/api/v1"

ROUTES: list[web.RouteDef] = [
    web.post(f"{API}/auth/register", auth.register),
    web.post(f"{API}/auth/login", auth.login),
    web.post(f"{API}/auth/logout", auth.logout),
    web.get(f"{API}/users/me", users.get_me),
    web.patch(f"{API}/users/me", users.patch_me),
    web.get(f"{API}/users", users.search),
    web.get(f"{API}/users/{{user_id}}", users.get_user),
    web.get(f"{API}/users/{{user_id}}/status", users.status),
    web.get(f"{API}/contacts", contacts.list_contacts),
    web.put(f"{API}/contacts/{{user_id}}", contacts.put_contact),
    web.delete(f"{API}/contacts/{{user_id}}", contacts.delete_contact),
    web.get(f"{API}/devices", devices.list_devices),
    web.delete(f"{API}/devices/{{device_id}}", devices.delete_device),
    web.put(f"{API}/devices/{{device_id}}/push", push.put_target),
    web.get(f"{API}/devices/{{device_id}}/push", push.get_target),
    web.delete(f"{API}/devices/{{device_id}}/push", push.delete_target),
    web.post(f"{API}/chats/direct", chats.open_direct),
    web.get(f"{API}/chats", chats.list_chats),
    web.get(f"{API}/chats/{{chat_id}}", chats.get_chat),
    web.get(f"{API}/chats/{{chat_id}}/messages", chats.history),
    web.post(f"{API}/chats/{{chat_id}}/read", chats.mark_read),
    web.post(f"{API}/messages", messages.send),
    web.post(f"{API}/groups", groups.create),
    web.get(f"{API}/groups/{{group_id}}", groups.get),
    web.patch(f"{API}/groups/{{group_id}}", groups.update),
    web.post(f"{API}/groups/{{group_id}}/members", groups.add_members),
    web.delete(f"{API}/groups/{{group_id}}/members/{{user_id}}", groups.remove_member),
    web.patch(f"{API}/groups/{{group_id}}/members/{{user_id}}", groups.set_role),
    web.post(f"{API}/media", media.upload),
    web.get(f"{API}/media/{{media_id}}", media.download),
    web.get(f"{API}/media/{{media_id}}/thumbnail", media.thumbnail),
    web.put(f"{API}/keys", keys.upload),
    web.get(f"{API}/keys/count", keys.count),
    web.get(f"{API}/keys/{{user_id}}", keys.fetch),
    web.get(f"{API}/health", ops.health),
    web.get(f"{API}/metrics", ops.metrics),
    web.get(f"{API}/cluster", cluster.status),
    web.get("/ws", ws.websocket),
    web.get(f"{API}/ws", ws.websocket),
]
