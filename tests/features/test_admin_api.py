"""The admin API (``/api/v1/admin``) through the wire, on every backend."""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
import pytest

from chatd.client import ApiError, ChatdClient
from chatd.gateway.admin_live import LIVE_HUB, QUEUE_FRAMES
from chatd.gateway.rest.admin import PREFIX
from chatd.gateway.routes import ROUTES
from tests.conftest import PASSWORD, services_of
from tests.features.test_auth_policy import closed_with

#: Every admin route of the route table, as (method, path with sample ids).
ADMIN_ROUTES = sorted(
    (r.method, re.sub(r"\{[a-z_]+\}", "x1", r.path[len("/api/v1") :]))
    for r in ROUTES
    if r.path.startswith(PREFIX)
)


async def make_admin(server, user):
    """A logged-in client of a user made admin the way `chatd user admin` does it."""
    admin = await user()
    await services_of(server).admin.set_admin("cli", admin.user_id, True)
    return admin


async def status_of(call) -> tuple[int, str]:
    with pytest.raises(ApiError) as err:
        await call
    return err.value.status, err.value.code


def test_the_route_table_has_every_admin_endpoint_of_the_contract():
    assert len(ADMIN_ROUTES) == 16
    assert ("GET", "/admin/live") in ADMIN_ROUTES


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES, ids=[" ".join(r) for r in ADMIN_ROUTES])
async def test_admin_endpoints_refuse_members_and_anonymous_callers(method, path, user, base_url):
    member = await user()
    body = {} if method in ("POST", "PUT", "PATCH") else None
    assert await status_of(member.request(method, path, json=body)) == (403, "forbidden")
    async with ChatdClient(base_url) as anonymous:
        assert await status_of(anonymous.request(method, path, json=body)) == (
            401,
            "unauthorized",
        )


async def test_users_pages_see_every_user_once_while_users_are_added(server, user, base_url):
    admin = await make_admin(server, user)
    original = {f"pg{n:02d}" for n in range(0, 20, 2)}
    for name in sorted(original):
        await user(name)
    seen: list[str] = []
    cursor = None
    added = 0
    while True:
        params = {"q": "pg", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await admin.request("GET", "/admin/users", params=params)
        assert len(page["users"]) <= 3
        seen.extend(u["username"] for u in page["users"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # New users on both sides of the cursor between two pages.
        for name in (f"pg{added:02d}x", f"pg{19 - added:02d}y"):
            async with ChatdClient(base_url) as other:
                await other.register(name, PASSWORD)
        added += 1
    assert len(seen) == len(set(seen)), "a user was shown twice"
    assert original <= set(seen), f"skipped: {original - set(seen)}"
    assert seen == sorted(seen)


async def test_users_list_and_detail_fields(server, user, device):
    admin = await make_admin(server, user)
    alice = await user("ad_alice")
    await device(alice)
    page = await admin.request("GET", "/admin/users", params={"q": "ad_alice"})
    (row,) = page["users"]
    assert page["next_cursor"] is None
    assert row["user_id"] == alice.user_id and row["username"] == "ad_alice"
    assert (row["is_admin"], row["banned"], row["devices"]) == (False, False, 2)
    assert row["created_at"].endswith("Z") and "last_seen" in row
    async with alice.connect(reconnect=False):
        detail = await admin.request("GET", f"/admin/users/{alice.user_id}")
        assert {d["device_id"] for d in detail["devices"]} >= {alice.device_id}
        mine = next(d for d in detail["devices"] if d["device_id"] == alice.device_id)
        assert mine["online"] is True and mine["device_name"]
    assert await status_of(admin.request("GET", "/admin/users/nobody")) == (404, "not_found")


async def test_limit_and_cursor_are_checked(server, user):
    admin = await make_admin(server, user)
    for params in ({"limit": 0}, {"limit": 501}, {"limit": "x"}, {"cursor": "garbage"}):
        got = await status_of(admin.request("GET", "/admin/users", params=params))
        assert got == (400, "bad_request"), params
    other = await admin.request("GET", "/admin/audit", params={"limit": 1})
    if other["next_cursor"]:  # one list's cursor is no good for another
        got = await status_of(
            admin.request("GET", "/admin/users", params={"cursor": other["next_cursor"]})
        )
        assert got == (400, "bad_request")


async def test_ban_closes_the_socket_at_once_and_blocks_login(server, user, base_url):
    admin = await make_admin(server, user)
    mallory = await user()
    async with mallory.connect(reconnect=False) as ws:
        await admin.request("POST", f"/admin/users/{mallory.user_id}/ban")
        assert await closed_with(ws, within=2.0) == 1008  # not the 1 s revocation poll
    assert await status_of(mallory.me()) == (401, "unauthorized")
    async with ChatdClient(base_url) as again:
        assert await status_of(again.login(mallory.username, PASSWORD)) == (403, "forbidden")
        row = await admin.request("GET", f"/admin/users/{mallory.user_id}")
        assert row["banned"] is True and row["devices"] == []
        await admin.request("POST", f"/admin/users/{mallory.user_id}/unban")
        await again.login(mallory.username, PASSWORD)
        assert (await again.me())["user_id"] == mallory.user_id
    entries = (await admin.request("GET", "/admin/audit"))["entries"]
    assert [(e["action"], e["actor_id"], e["target_id"]) for e in entries[:2]] == [
        ("user.unban", admin.user_id, mallory.user_id),
        ("user.ban", admin.user_id, mallory.user_id),
    ]


async def test_an_admin_cannot_ban_themself(server, user):
    admin = await make_admin(server, user)
    got = await status_of(admin.request("POST", f"/admin/users/{admin.user_id}/ban"))
    assert got == (400, "bad_request")


async def test_password_reset_revokes_every_token(server, user, device, base_url):
    admin = await make_admin(server, user)
    bob = await user()
    phone = await device(bob)
    async with phone.connect(reconnect=False) as ws:
        path = f"/admin/users/{bob.user_id}/password"
        assert await status_of(admin.request("PUT", path, json={"password": "x"})) == (
            400,
            "bad_request",
        )
        await admin.request("PUT", path, json={"password": "a new password"})
        assert await closed_with(ws, within=2.0) is not None
    for client in (bob, phone):
        assert await status_of(client.me()) == (401, "unauthorized")
    async with ChatdClient(base_url) as again:
        assert await status_of(again.login(bob.username, PASSWORD)) == (401, "unauthorized")
        await again.login(bob.username, "a new password")
    entry = (await admin.request("GET", "/admin/audit"))["entries"][0]
    assert (entry["action"], entry["actor_id"], entry["target_id"]) == (
        "user.password",
        admin.user_id,
        bob.user_id,
    )
    assert "a new password" not in str(entry)


async def test_make_admin_lets_the_user_in(server, user):
    admin = await make_admin(server, user)
    carol = await user()
    assert await status_of(carol.request("GET", "/admin/stats")) == (403, "forbidden")
    path = f"/admin/users/{carol.user_id}"
    assert await status_of(admin.request("PATCH", path, json={"is_admin": "yes"})) == (
        400,
        "bad_request",
    )
    made = await admin.request("PATCH", path, json={"is_admin": True})
    assert made["is_admin"] is True and made["user_id"] == carol.user_id
    assert "node_id" in await carol.request("GET", "/admin/stats")
    await admin.request("PATCH", path, json={"is_admin": False})
    assert await status_of(carol.request("GET", "/admin/stats")) == (403, "forbidden")
    actions = [e["action"] for e in (await admin.request("GET", "/admin/audit"))["entries"]]
    assert actions[:2] == ["user.admin", "user.admin"]


async def test_revoking_a_device_logs_out_that_device_only(server, user, device):
    admin = await make_admin(server, user)
    dave = await user()
    laptop = await device(dave)
    async with laptop.connect(reconnect=False) as ws:
        await admin.request("DELETE", f"/admin/users/{dave.user_id}/devices/{laptop.device_id}")
        assert await closed_with(ws, within=2.0) is not None
    assert await status_of(laptop.me()) == (401, "unauthorized")
    assert (await dave.me())["user_id"] == dave.user_id
    other = await user()
    got = await status_of(
        admin.request("DELETE", f"/admin/users/{other.user_id}/devices/{dave.device_id}")
    )
    assert got == (404, "not_found")
    entry = (await admin.request("GET", "/admin/audit"))["entries"][0]
    assert (entry["action"], entry["target_id"]) == ("device.revoke", laptop.device_id)


async def test_invites_groups_media_and_stats(server, user):
    admin = await make_admin(server, user)
    invite = await admin.request("POST", "/admin/invites", json={"uses": 2, "expires_in_s": 3600})
    assert invite["uses"] == 2 and len(invite["code"]) >= 16 and invite["expires_at"].endswith("Z")
    assert (await admin.request("POST", "/admin/invites"))["uses"] == 1
    got = await status_of(admin.request("POST", "/admin/invites", json={"uses": 0}))
    assert got == (400, "bad_request")
    erin = await user()
    made = [await erin.create_group(name, [admin.user_id]) for name in ("Zeta", "Zoo", "Alpha")]
    page = await admin.request("GET", "/admin/groups", params={"q": "z", "limit": 1})
    seen = [g["name"] for g in page["groups"]]
    while page["next_cursor"]:
        page = await admin.request(
            "GET", "/admin/groups", params={"q": "z", "limit": 1, "cursor": page["next_cursor"]}
        )
        seen += [g["name"] for g in page["groups"]]
    assert seen == ["Zeta", "Zoo"]
    row = (await admin.request("GET", "/admin/groups", params={"q": "alpha"}))["groups"][0]
    assert row["group_id"] == made[2]["group_id"]
    assert (row["members_count"], row["last_seq"] >= 1) == (2, True)
    detail = await admin.request("GET", f"/admin/groups/{row['group_id']}")
    assert {m["user_id"] for m in detail["members"]} == {erin.user_id, admin.user_id}
    media = await admin.request("GET", "/admin/media")
    assert set(media) == {"files", "bytes", "unreferenced_files"}
    stats = await admin.request("GET", "/admin/stats")
    assert set(stats) == {
        "node_id",
        "uptime_s",
        "connections",
        "users",
        "chats",
        "messages_total",
        "messages_per_s",
        "delivery_p50_ms",
        "delivery_p99_ms",
        "push_outbox_depth",
        "storage",
        "nodes",
    }
    assert stats["users"] >= 2 and stats["push_outbox_depth"] == 0
    assert [n["node_id"] for n in stats["nodes"]] == [stats["node_id"]]
    actions = {e["action"] for e in (await admin.request("GET", "/admin/audit"))["entries"]}
    assert "invite.create" in actions


async def test_audit_pages_newest_first(server, user):
    admin = await make_admin(server, user)
    target = await user()
    for flag in (True, False, True):
        path = f"/admin/users/{target.user_id}"
        await admin.request("PATCH", path, json={"is_admin": flag})
    page = await admin.request("GET", "/admin/audit", params={"limit": 2})
    second = await admin.request(
        "GET", "/admin/audit", params={"limit": 2, "cursor": page["next_cursor"]}
    )
    entries = page["entries"] + second["entries"]
    assert [e["detail"] for e in entries[:3]] == [
        "is_admin=true",
        "is_admin=false",
        "is_admin=true",
    ]
    times = [e["time"] for e in entries]
    assert times == sorted(times, reverse=True)
    assert set(entries[0]) == {"time", "actor_id", "action", "target_id", "detail"}


# -- /admin/live ------------------------------------------------------------------


def live_url(base_url: str) -> str:
    return base_url + "/api/v1/admin/live"


async def next_frame(ws, kind: str, timeout: float = 5.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.receive_json()
            if frame["type"] == kind:
                return frame["data"]


@pytest.fixture
def info_logs():
    """The chatd loggers at INFO for the test (as `chatd serve` runs them by default)."""
    logger = logging.getLogger("chatd")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)


async def test_live_streams_stats_and_log_frames(server, user, base_url, info_logs):
    admin = await make_admin(server, user)
    target = await user()
    headers = {"Authorization": f"Bearer {admin.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(live_url(base_url), headers=headers) as ws,
    ):
        first = await next_frame(ws, "stats")
        second = await next_frame(ws, "stats", timeout=3.0)
        assert second["uptime_s"] > first["uptime_s"] and "messages_per_s" in second
        await admin.request("POST", f"/admin/users/{target.user_id}/ban")
        while True:
            entry = await next_frame(ws, "log")
            if entry["logger"] == "chatd.audit":
                break
        assert entry["level"] == "INFO" and admin.user_id in entry["message"]
        assert entry["time"].endswith("Z")


async def test_live_needs_an_admin_token(server, user, base_url):
    member = await user()
    async with aiohttp.ClientSession() as http:
        for query, status in (("", 401), (f"?token={member.token}", 403)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(live_url(base_url) + query)
            assert err.value.status == status
    admin = await make_admin(server, user)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(live_url(base_url) + f"?token={admin.token}") as ws,
    ):
        assert "node_id" in await next_frame(ws, "stats")


async def test_a_live_client_that_does_not_read_stays_bounded(server, user, base_url, info_logs):
    admin = await make_admin(server, user)
    hub = server.app[LIVE_HUB]
    flood = logging.getLogger("chatd.test_flood")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(live_url(base_url) + f"?token={admin.token}")
        await next_frame(ws, "stats")
        # Never read again: the frames pile up in the socket, then in the queue.
        for n in range(3000):
            flood.info("line %d %s", n, "x" * 4000)
            if n % 100 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.5)
        assert hub.dropped > 0
        assert all(q.qsize() <= QUEUE_FRAMES for q in hub._queues)
        assert "node_id" in await admin.request("GET", "/admin/stats")  # the server is fine
        await ws.close()
    async with asyncio.timeout(5):
        while hub.sockets:
            await asyncio.sleep(0.05)


async def test_a_ban_on_one_node_closes_sockets_on_the_other_at_once(
    aiohttp_server, tmp_path, server_overrides
):
    """Two app instances sharing store, router and presence (as in test_shared_router):
    the router carries the ban's invalidation, faster than the 1 s revocation poll."""
    from chatd.app import build_app
    from chatd.cluster.local import LocalRouter
    from chatd.presence.local import LocalPresence
    from tests.conftest import merge, test_config

    router, presence = LocalRouter(), LocalPresence()
    servers = []
    for name in ("a", "b"):
        overrides = merge(server_overrides, {"server": {"node_id": f"node-{name}"}})
        app = build_app(test_config(tmp_path / "data", overrides), router=router, presence=presence)
        servers.append(await aiohttp_server(app))
    url_a, url_b = (str(s.make_url("")).rstrip("/") for s in servers)
    async with ChatdClient(url_a) as admin, ChatdClient(url_b) as mallory:
        for client, name in ((admin, "root_two"), (mallory, "mallory_two")):
            await client.register(name, PASSWORD)
            await client.login(name, PASSWORD)
        await services_of(servers[0]).admin.set_admin("cli", admin.user_id, True)
        async with mallory.connect(reconnect=False) as ws:
            await admin.request("POST", f"/admin/users/{mallory.user_id}/ban")
            assert await closed_with(ws, within=0.5) == 1008
