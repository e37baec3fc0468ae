"""The admin console against a real in-process chatd: what an admin sees and does.

Each test drives ``AdminApp`` at 80x24 with Pilot, through the admin REST API of
the ``server`` fixture (on every ``--storage`` backend).
"""

from __future__ import annotations

import asyncio
import logging
import re
import stat
from typing import Any

import pytest
from typer.testing import CliRunner

from admin_tui import profile
from admin_tui.api import AdminApi, AdminError
from admin_tui.screens.audit import AuditScreen
from admin_tui.screens.confirm import ConfirmDialog
from admin_tui.screens.invite import InviteDialog
from admin_tui.screens.password import PasswordDialog
from admin_tui.screens.user_detail import UserDetailScreen
from admin_tui.start import Credentials, resolve, sign_in
from admin_tui.widgets.paged_table import PagedTable
from admin_tui.widgets.stat_spark import StatSpark
from admin_tui.widgets.unavailable import Unavailable
from chatd.cli import app as cli
from chatd.client import ApiError, ChatdClient
from tests.conftest import PASSWORD, services_of
from tests.features.test_auth_policy import closed_with
from tests.tui.canned_server import canned_app
from tests.tui.conftest import console, notes, settle


async def open_user(pilot: Any, typed: str, username: str) -> UserDetailScreen:
    """Users screen, type ``typed`` in the search, open ``username``'s page."""
    app = pilot.app
    await pilot.press("2")
    await pilot.press(*typed)

    def only_match() -> bool:
        table = app.screen.query(PagedTable)
        if not table:
            return False
        shown = [u["username"] for u in table.first().items.values()]
        return shown == [username]

    await settle(pilot, only_match)
    await pilot.press("enter", "enter")
    await settle(pilot, lambda: isinstance(app.screen, UserDetailScreen) and app.screen.user)
    return app.screen  # type: ignore[return-value]


# -- signing in -----------------------------------------------------------------


async def test_an_admin_signs_in_and_the_token_opens_the_admin_api(server, base_url):
    await services_of(server).accounts.create_user("root", PASSWORD, is_admin=True)
    token = await sign_in(base_url, "root", PASSWORD)
    api = AdminApi(base_url, token)
    try:
        assert (await api.stats())["users"] == 1
    finally:
        await api.aclose()


async def test_a_member_is_told_in_words_and_keeps_no_stray_device(base_url, user):
    alice = await user("alice")
    with pytest.raises(AdminError, match="forbidden: this account is not an admin") as err:
        await sign_in(base_url, "alice", PASSWORD)
    assert err.value.code == "forbidden"
    assert len(await alice.devices()) == 1  # the console's login was logged out again


async def test_a_wrong_password_is_the_servers_message(server, base_url):
    await services_of(server).accounts.create_user("root", PASSWORD, is_admin=True)
    with pytest.raises(AdminError) as err:
        await sign_in(base_url, "root", "not the password")
    assert err.value.code == "unauthorized"
    assert str(err.value) and "Traceback" not in str(err.value)


async def test_an_unreachable_server_is_a_sentence():
    with pytest.raises(AdminError, match=re.escape("cannot reach http://127.0.0.1:9:")):
        await sign_in("http://127.0.0.1:9", "root", PASSWORD)


async def test_saved_profile_is_owner_only_and_used_without_a_prompt(
    base_url, admin_token, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("CHATD_ADMIN_TOKEN", raising=False)
    where = profile.save(profile.Saved(base_url, admin_token, "root"))
    assert where == tmp_path / "config" / "chatd" / "admin.toml"
    assert stat.S_IMODE(where.stat().st_mode) == 0o600

    def no_prompt(text: str, hide: bool) -> str:
        raise AssertionError(f"asked for {text}")

    # resolve() runs its own event loop (it is what `chatd admin` calls): off this one.
    creds = await asyncio.to_thread(resolve, None, None, no_prompt, print)
    assert creds == Credentials(base_url, admin_token, "root", "profile")


async def test_a_revoked_saved_token_falls_back_to_the_prompt(
    base_url, admin_token, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("CHATD_ADMIN_TOKEN", raising=False)
    profile.save(profile.Saved(base_url, admin_token, "root"))
    async with ChatdClient(base_url, token=admin_token) as saved:
        await saved.logout()
    said: list[str] = []
    answers = {"Password": PASSWORD}
    creds = await asyncio.to_thread(
        resolve, base_url, None, lambda text, hide: answers.get(text, "root"), said.append
    )
    assert creds.source == "login" and creds.token != admin_token
    assert said == [f"the saved token for {base_url} no longer works; log in again"]


async def test_the_environment_token_wins(base_url, admin_token, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("CHATD_ADMIN_TOKEN", admin_token)
    creds = await asyncio.to_thread(resolve, base_url, None, None, print)  # type: ignore[arg-type]
    assert creds.source == "environment" and creds.token == admin_token


async def test_chatd_admin_refuses_a_member_in_one_line(base_url, user, tmp_path, monkeypatch):
    await user("alice")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("CHATD_ADMIN_TOKEN", raising=False)
    args = ["admin", "--url", base_url, "--user", "alice", "--save"]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args, input=PASSWORD + "\n")
    assert result.exit_code == 1
    assert f"chatd: forbidden: this account is not an admin of {base_url}" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "config" / "chatd" / "admin.toml").exists()


def test_chatd_admin_has_help():
    result = CliRunner().invoke(cli, ["admin", "--help"])
    assert result.exit_code == 0
    assert "CHATD_ADMIN_TOKEN" in result.output and "--save" in result.output


# -- users ----------------------------------------------------------------------


async def test_ban_through_the_confirm_dialog_closes_the_users_socket(
    server, base_url, admin_token, user
):
    alice = await user("alice")
    await user("albert")
    async with alice.connect(reconnect=False) as ws:
        app = console(base_url, admin_token)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            page = await open_user(pilot, "ali", "alice")
            await pilot.press("b")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            assert await closed_with(ws) is not None
            await settle(pilot, lambda: page.user and page.user["banned"])
            assert "alice is banned" in notes(app)
            assert not page.check_action("ban", ())  # only unban is offered now
    sockets = [s for s in services_of(server).sessions.all() if s.caller.user_id == alice.user_id]
    assert sockets == []
    with pytest.raises(ApiError) as err:
        await alice.me()
    assert err.value.code == "unauthorized"


async def test_cancelling_the_dialog_bans_nobody(base_url, admin_token, admin_api, user):
    alice = await user("alice")
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_user(pilot, "alice", "alice")
        await pilot.press("b")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, UserDetailScreen))
    assert (await admin_api.user(alice.user_id))["banned"] is False


async def test_unban_lets_the_user_log_in_again(base_url, admin_token, admin_api, user):
    alice = await user("alice")
    await admin_api.ban(alice.user_id)
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        page = await open_user(pilot, "alice", "alice")
        await pilot.press("u")
        await settle(pilot, lambda: page.user and not page.user["banned"])
    async with ChatdClient(base_url) as again:
        await again.login("alice", PASSWORD)


async def test_password_reset_logs_every_device_out(base_url, admin_token, user, device):
    alice = await user("alice")
    phone = await device(alice)
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await open_user(pilot, "alice", "alice")
        await pilot.press("p")
        await settle(pilot, lambda: isinstance(app.screen, PasswordDialog))
        await pilot.press(*"fresh new secret", "enter", *"fresh new secret", "enter")
        await settle(pilot, lambda: any("password of alice reset" in n for n in notes(app)))
    for client in (alice, phone):
        with pytest.raises(ApiError) as err:
            await client.me()
        assert err.value.code == "unauthorized"
    async with ChatdClient(base_url) as again:
        await again.login("alice", "fresh new secret")


async def test_revoking_a_device_leaves_the_others(base_url, admin_token, user, device):
    alice = await user("alice")
    phone = await device(alice)
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        page = await open_user(pilot, "alice", "alice")
        devices = page.query_one("#devices")
        assert devices.row_count == 2
        rows = [devices.coordinate_to_cell_key((r, 0)).row_key.value for r in range(2)]
        devices.move_cursor(row=rows.index(phone.device_id))
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await settle(pilot, lambda: devices.row_count == 1)
    with pytest.raises(ApiError):
        await phone.me()
    assert (await alice.me())["username"] == "alice"


async def test_make_admin_gives_the_admin_api(base_url, admin_token, user):
    carol = await user("carol")
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        page = await open_user(pilot, "car", "carol")
        await pilot.press("a")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await settle(pilot, lambda: page.user and page.user["is_admin"])
    assert "users" in await carol.request("GET", "/admin/stats")


async def test_search_pages_with_n_and_p(base_url, admin_token, user):
    for n in range(3):
        await user(f"page{n}")
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await settle(pilot, lambda: app.screen.query(PagedTable))
        table = app.screen.query_one(PagedTable)
        table.reload(lambda cursor: app.api.users("page", cursor=cursor, limit=2))
        await settle(pilot, lambda: table.row_count == 2 and table.has_next)
        table.focus()
        await pilot.press("n")
        await settle(pilot, lambda: table.page == 2 and table.row_count == 1)
        assert [u["username"] for u in table.items.values()] == ["page2"]
        await pilot.press("p")
        await settle(pilot, lambda: table.page == 1 and table.row_count == 2)


@pytest.mark.parametrize("config_overrides", [{"auth": {"registration": "invite"}}])
async def test_an_invite_from_the_console_lets_someone_register(base_url, admin_token):
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "down", "i")
        await settle(pilot, lambda: isinstance(app.screen, InviteDialog))
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen.code)
        code = app.screen.code
    async with ChatdClient(base_url) as newcomer:
        await newcomer.register("newcomer", PASSWORD, invite_code=code)
        with pytest.raises(ApiError):  # one use only
            await newcomer.register("second", PASSWORD, invite_code=code)


# -- groups, media, audit -----------------------------------------------------------


async def test_a_group_shows_its_members_by_name_with_roles(base_url, admin_token, user):
    alice = await user("alice")
    bob = await user("bob")
    await alice.create_group("book club", [bob.user_id])
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", *"book")
        await settle(pilot, lambda: app.screen.query_one(PagedTable).row_count == 1)
        await pilot.press("enter", "enter")
        await settle(
            pilot,
            lambda: (
                app.screen.query("#members") and app.screen.query_one("#members").row_count == 2
            ),
        )
        members = app.screen.query_one("#members")
        shown = {members.get_row_at(r)[0]: members.get_row_at(r)[1] for r in range(2)}
    assert shown == {"alice": "admin", "bob": "member"}


async def test_media_usage_counts_an_upload(base_url, admin_token, user):
    alice = await user("alice")
    await alice.upload_media(b"hello, world\n" * 100, "text/plain")
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(
            pilot, lambda: "Files stored          1" in str(app.screen.query_one("#usage").render())
        )


async def test_the_audit_screen_lists_a_ban_by_its_admin(base_url, admin_token, admin_api, user):
    alice = await user("alice")
    await admin_api.ban(alice.user_id)
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("8")
        await settle(
            pilot,
            lambda: (
                isinstance(app.screen, AuditScreen) and app.screen.query_one(PagedTable).row_count
            ),
        )
        entries = list(app.screen.query_one(PagedTable).items.values())
    assert entries[0]["actor_id"] == "root"
    assert "ban" in entries[0]["action"] and entries[0]["target_id"] == alice.user_id


# -- live ---------------------------------------------------------------------------


async def test_the_dashboard_moves_when_messages_flow(base_url, admin_token, user):
    alice = await user("alice")
    bob = await user("bob")
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot, bob.connect() as bob_ws:
        await settle(pilot, lambda: app.feed.latest is not None)
        rate = app.screen.query_one("#messages-per-s Sparkline")
        p99 = app.screen.query_one("#delivery-p99-ms Sparkline")
        assert not any(rate.data or [])
        for n in range(20):
            await alice.send_message(recipient_id=bob.user_id, content=f"hi {n}")
        for _ in range(20):
            await bob_ws.next_event("new_message")
        # The sparklines draw the numbers of the stats frames the server sends each second.
        await settle(pilot, lambda: max(rate.data or [0]) > 0)
        await settle(pilot, lambda: p99.data)
        assert app.screen.query_one("#connections", StatSpark).value >= 1
        assert app.feed.status == "live"


async def test_the_log_tail_shows_records_and_filters_by_level(base_url, admin_token, caplog):
    caplog.set_level(logging.INFO, logger="chatd")
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("7")
        await settle(pilot, lambda: app.feed.status == "live")
        log = logging.getLogger("chatd.test")
        log.info("an info line for the tail")
        await settle(
            pilot, lambda: any("an info line" in r.get("message", "") for r in app.feed.log_records)
        )
        text = lambda: "\n".join(line.text for line in app.screen.query_one("#log").lines)  # noqa: E731
        await settle(pilot, lambda: "an info line for the tail" in text())
        await pilot.press("l")  # WARNING and above
        await settle(pilot, lambda: "an info line" not in text())
        log.warning("a warning line for the tail")
        await settle(pilot, lambda: "a warning line for the tail" in text())


async def test_the_command_palette_opens_screens_and_runs_actions(base_url, admin_token, user):
    await user("alice")
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p", *"go to audit")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, AuditScreen))
        await open_user(pilot, "alice", "alice")
        await pilot.press("ctrl+p", *"revoke device")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog))


# -- endpoints this server may not have ---------------------------------------------


async def test_the_nodes_screen_lists_this_server(base_url, admin_token):
    async with ChatdClient(base_url) as anonymous:
        node_id = (await anonymous.health())["node_id"]
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await settle(
            pilot,
            lambda: app.screen.query("#nodes") and app.screen.query_one("#nodes").row_count == 1,
        )
        row = app.screen.query_one("#nodes").get_row_at(0)
    assert row[0] == f"{node_id}*" and row[2] == "alive"


async def test_a_server_without_push_cluster_or_live_feed_is_said_so(aiohttp_server):
    """An older server (the canned one, with those routes left out) answers 404."""
    canned = await aiohttp_server(canned_app(push=False, cluster=False, live=False))
    app = console(str(canned.make_url("")).rstrip("/"), "canned-token")
    async with app.run_test(size=(80, 24)) as pilot:
        for key in ("4", "6", "7"):
            await pilot.press(key)
            await settle(
                pilot,
                lambda: app.screen.query(Unavailable) and app.screen.query_one(Unavailable).display,
            )
            assert "not available on this server" in str(app.screen.query_one(Unavailable).render())
        await settle(pilot, lambda: app.feed.status == "polling")
        assert app.feed.latest is not None  # the numbers still come, from /admin/stats


async def test_a_refusal_is_shown_in_the_servers_words(base_url, admin_token, user):
    async with ChatdClient(base_url, token="not-a-token") as stranger:
        with pytest.raises(ApiError) as refusal:
            await stranger.request("GET", "/admin/users")
    app = console(base_url, "not-a-token")
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.press("2")
        await settle(pilot, lambda: notes(app))
        assert notes(app) == [refusal.value.message]
        assert app.is_running
