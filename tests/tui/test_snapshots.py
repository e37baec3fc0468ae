"""Each screen of the admin console at 80x24, pinned as an SVG snapshot.

The data comes from the canned server (fixed bodies, so the pictures do not move);
what the screens do is tested against a real chatd in test_admin_tui.py. After a
deliberate change of the look: ``pytest tests/tui --snapshot-update``, and look at
the new SVGs before committing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from admin_tui.api import AdminApi
from admin_tui.app import AdminApp
from admin_tui.screens.confirm import ConfirmDialog
from admin_tui.screens.group_detail import GroupDetailScreen
from admin_tui.screens.invite import InviteDialog
from admin_tui.screens.password import PasswordDialog
from admin_tui.screens.user_detail import UserDetailScreen
from admin_tui.widgets.paged_table import PagedTable
from admin_tui.widgets.unavailable import Unavailable
from tests.tui.canned_server import SERIES
from tests.tui.conftest import canned_server, settle

Pilot = Any


def shot(snap_compare: Any, run_before: Callable[[Pilot], Awaitable[None]], **routes: bool) -> bool:
    with canned_server(**routes) as url:
        app = AdminApp(AdminApi(url, "canned-token"), label="chatd.example.org")
        return snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def fed(pilot: Pilot) -> bool:
    """Every canned stats frame has arrived."""
    return (
        pilot.app.feed.latest is not None
        and len(pilot.app.feed.series["connections"]) == len(SERIES) + 1
    )


def rows(pilot: Pilot, n: int) -> Callable[[], bool]:
    return lambda: pilot.app.screen.query_one(PagedTable).row_count == n


async def on(pilot: Pilot, key: str, ready: Callable[[], bool]) -> None:
    await settle(pilot, lambda: fed(pilot))
    await pilot.press(key)
    await settle(pilot, ready)


def test_dashboard(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, lambda: fed(pilot))
        await settle(pilot, lambda: pilot.app.screen.query_one("#nodes").display)

    assert shot(snap_compare, run_before)


def test_users(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "2", lambda: pilot.app.screen.query(PagedTable) and rows(pilot, 5)())

    assert shot(snap_compare, run_before)


def user_page(pilot: Pilot) -> bool:
    screen = pilot.app.screen
    return isinstance(screen, UserDetailScreen) and screen.query_one("#devices").row_count == 2


def test_user_detail(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "2", lambda: pilot.app.screen.query(PagedTable) and rows(pilot, 5)())
        await pilot.press("down", "enter")
        await settle(pilot, lambda: user_page(pilot))

    assert shot(snap_compare, run_before)


def test_ban_confirmation(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "2", lambda: pilot.app.screen.query(PagedTable) and rows(pilot, 5)())
        await pilot.press("down", "enter")
        await settle(pilot, lambda: user_page(pilot))
        await pilot.press("b")
        await settle(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))

    assert shot(snap_compare, run_before)


def test_password_dialog(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "2", lambda: pilot.app.screen.query(PagedTable) and rows(pilot, 5)())
        await pilot.press("down", "enter")
        await settle(pilot, lambda: user_page(pilot))
        await pilot.press("p")
        await settle(pilot, lambda: isinstance(pilot.app.screen, PasswordDialog))
        await pilot.press(*"secret", "enter", *"other", "enter")

    assert shot(snap_compare, run_before)


def test_invite_dialog(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "2", lambda: pilot.app.screen.query(PagedTable) and rows(pilot, 5)())
        await pilot.press("down", "i")
        await settle(pilot, lambda: isinstance(pilot.app.screen, InviteDialog))
        await pilot.press("enter")
        await settle(pilot, lambda: pilot.app.screen.code)

    assert shot(snap_compare, run_before)


def test_groups(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "3", lambda: pilot.app.screen.query(PagedTable) and rows(pilot, 2)())

    assert shot(snap_compare, run_before)


def test_group_detail(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "3", lambda: pilot.app.screen.query(PagedTable) and rows(pilot, 2)())
        await pilot.press("down", "enter")
        await settle(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, GroupDetailScreen)
                and pilot.app.screen.query_one("#members").row_count == 3
            ),
        )

    assert shot(snap_compare, run_before)


def test_push(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "4", lambda: pilot.app.screen.query(PagedTable) and rows(pilot, 2)())

    assert shot(snap_compare, run_before)


def unavailable(pilot: Pilot) -> bool:
    shown = pilot.app.screen.query(Unavailable)
    return bool(shown) and shown.first().display


def test_push_not_available(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "4", lambda: unavailable(pilot))

    assert shot(snap_compare, run_before, push=False)


def test_media(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "5", lambda: "314" in str(pilot.app.screen.query_one("#usage").render()))

    assert shot(snap_compare, run_before)


def test_nodes(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(
            pilot,
            "6",
            lambda: (
                pilot.app.screen.query("#nodes")
                and pilot.app.screen.query_one("#nodes").row_count == 2
            ),
        )

    assert shot(snap_compare, run_before)


def test_nodes_not_available(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "6", lambda: unavailable(pilot))

    assert shot(snap_compare, run_before, cluster=False)


def test_logs(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(
            pilot,
            "7",
            lambda: (
                pilot.app.screen.query("#log")
                and len(pilot.app.screen.query_one("#log").lines) == 3
            ),
        )

    assert shot(snap_compare, run_before)


def test_logs_at_warning_and_above(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(
            pilot,
            "7",
            lambda: (
                pilot.app.screen.query("#log")
                and len(pilot.app.screen.query_one("#log").lines) == 3
            ),
        )
        await pilot.press("l")
        await settle(pilot, lambda: len(pilot.app.screen.query_one("#log").lines) == 2)

    assert shot(snap_compare, run_before)


def test_audit(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await on(pilot, "8", lambda: pilot.app.screen.query(PagedTable) and rows(pilot, 3)())

    assert shot(snap_compare, run_before)


@pytest.mark.parametrize("theme", ["textual-light"])
def test_dashboard_on_a_light_theme(snap_compare: Any, theme: str) -> None:
    async def run_before(pilot: Pilot) -> None:
        pilot.app.theme = theme
        await settle(pilot, lambda: fed(pilot))
        await settle(pilot, lambda: pilot.app.screen.query_one("#nodes").display)

    assert shot(snap_compare, run_before)
