"""A server that answers the admin endpoints with fixed contract-shaped bodies.

Only for the snapshot tests: a screenshot is compared pixel for pixel, so what a
screen shows must not depend on the clock or on random ids. Everything a user does
(log in, search, ban, retry, live numbers) is tested against a real chatd instead.
``push=False`` / ``cluster=False`` / ``live=False`` leave those routes out, as a
server without them answers (404).
"""

from __future__ import annotations

from aiohttp import web

T0 = "2026-12-01T09:00:00.000Z"

STATS = {
    "node_id": "node-a",
    "uptime_s": 93784,
    "connections": 42,
    "users": 1280,
    "chats": 5120,
    "messages_total": 987654,
    "messages_per_s": 12.5,
    "delivery_p50_ms": 3.2,
    "delivery_p99_ms": 18.4,
    "push_outbox_depth": 7,
    "storage": "sqlite",
    "nodes": 2,
}
#: stats frames the live socket sends at once: the sparklines' history
SERIES = [(m, c, p) for m, c, p in zip(range(0, 40, 2), range(30, 50), range(10, 30), strict=True)]
DEVICES = [
    {
        "device_id": "dev-1",
        "device_name": "phone",
        "created_at": T0,
        "last_seen": "2026-12-06T08:00:00.000Z",
        "online": True,
    },
    {
        "device_id": "dev-2",
        "device_name": "laptop",
        "created_at": T0,
        "last_seen": "2026-12-05T18:30:00.000Z",
        "online": False,
    },
]
USERS = [
    {
        "user_id": f"u-{name}",
        "username": name,
        "display_name": name.title(),
        "is_admin": name == "root",
        "banned": name == "mallory",
        "created_at": T0,
        "last_seen": "2026-12-06T08:00:00.000Z",
        "devices": 2,
    }
    for name in ("alice", "bob", "carol", "mallory", "root")
]
GROUPS = [
    {
        "group_id": "g-1",
        "name": "book club",
        "members_count": 3,
        "created_at": T0,
        "last_seq": 412,
    },
    {"group_id": "g-2", "name": "ops", "members_count": 2, "created_at": T0, "last_seq": 9},
]
MEMBERS = [
    {"user_id": "u-alice", "username": "alice", "role": "owner", "joined_at": T0},
    {"user_id": "u-bob", "username": "bob", "role": "admin", "joined_at": T0},
    {"user_id": "u-carol", "username": "carol", "role": "member", "joined_at": T0},
]
DEAD = [
    {
        "id": "p-1",
        "provider": "webhook",
        "device_id": "dev-1",
        "attempts": 8,
        "last_error": "HTTP 503 from hooks.example.org",
        "created_at": T0,
    },
    {
        "id": "p-2",
        "provider": "fcm",
        "device_id": "dev-7",
        "attempts": 8,
        "last_error": "connection refused",
        "created_at": T0,
    },
]
AUDIT = [
    {
        "time": f"2026-12-06T08:0{2 - n}:00.000Z",
        "actor_id": "u-root",
        "action": action,
        "target_id": target,
        "detail": detail,
    }
    for n, (action, target, detail) in enumerate(
        [
            ("user.ban", "u-mallory", None),
            ("user.password", "u-bob", None),
            ("user.admin", "u-carol", {"is_admin": True}),
        ]
    )
]
LOGS = [
    {"time": "2026-12-06T08:00:01.000Z", "level": "INFO", "logger": "chatd", "message": "up"},
    {
        "time": "2026-12-06T08:00:02.000Z",
        "level": "WARNING",
        "logger": "chatd.push",
        "message": "webhook slow",
    },
    {
        "time": "2026-12-06T08:00:03.000Z",
        "level": "ERROR",
        "logger": "chatd.storage",
        "message": "write failed; retrying",
    },
]
CLUSTER = {
    "node_id": "node-a",
    "nodes": [
        {
            "node_id": "node-a",
            "address": "10.0.0.1:7946",
            "status": "alive",
            "connections": 30,
            "joined_at": T0,
        },
        {
            "node_id": "node-b",
            "address": "10.0.0.2:7946",
            "status": "suspect",
            "connections": 12,
            "joined_at": T0,
        },
    ],
}


def canned_app(*, push: bool = True, cluster: bool = True, live: bool = True) -> web.Application:
    routes = web.RouteTableDef()
    api = "/api/v1"

    @routes.get(api + "/admin/stats")
    async def stats(request: web.Request) -> web.Response:
        return web.json_response(STATS)

    @routes.get(api + "/admin/users")
    async def users(request: web.Request) -> web.Response:
        q = request.query.get("q", "")
        found = [u for u in USERS if u["username"].startswith(q)]
        return web.json_response({"users": found, "next_cursor": None})

    @routes.get(api + "/admin/users/{user_id}")
    async def user(request: web.Request) -> web.Response:
        for u in USERS:
            if u["user_id"] == request.match_info["user_id"]:
                return web.json_response({**u, "devices": DEVICES})
        raise web.HTTPNotFound()

    @routes.post(api + "/admin/invites")
    async def invite(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {"code": "k3Q9-canned-code", "uses": body["uses"], "expires_at": T0}, status=201
        )

    @routes.get(api + "/admin/groups")
    async def groups(request: web.Request) -> web.Response:
        return web.json_response({"groups": GROUPS, "next_cursor": None})

    @routes.get(api + "/admin/groups/{group_id}")
    async def group(request: web.Request) -> web.Response:
        return web.json_response({**GROUPS[0], "description": "we read", "members": MEMBERS})

    @routes.get(api + "/admin/media")
    async def media(request: web.Request) -> web.Response:
        return web.json_response({"files": 314, "bytes": 5_368_709_120, "unreferenced_files": 3})

    @routes.get(api + "/admin/audit")
    async def audit(request: web.Request) -> web.Response:
        return web.json_response({"entries": AUDIT, "next_cursor": "more"})

    if push:

        @routes.get(api + "/admin/push")
        async def push_list(request: web.Request) -> web.Response:
            return web.json_response({"outbox_depth": 7, "dead": DEAD, "next_cursor": None})

    if cluster:

        @routes.get(api + "/cluster")
        async def cluster_view(request: web.Request) -> web.Response:
            return web.json_response(CLUSTER)

    if live:

        @routes.get(api + "/admin/live")
        async def live_feed(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            for m, c, p in SERIES:
                frame = {**STATS, "messages_per_s": m, "connections": c, "delivery_p99_ms": p}
                await ws.send_json({"type": "stats", "data": frame})
            for record in LOGS:
                await ws.send_json({"type": "log", "data": record})
            await ws.send_json({"type": "stats", "data": STATS})
            async for _ in ws:  # until the console closes it
                pass
            return ws

    app = web.Application()
    app.add_routes(routes)
    return app
