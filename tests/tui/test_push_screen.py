"""The Push screen against a real chatd whose webhook provider fails: a dead item, retried."""

from __future__ import annotations

import pytest

from admin_tui.widgets.paged_table import PagedTable
from tests.conftest import fast_push
from tests.features.test_push import register
from tests.tui.conftest import console, notes, settle


@pytest.fixture
def config_overrides(hook):
    return fast_push(hook, max_attempts=2)


async def test_a_dead_notification_shows_its_error_and_r_sends_it_again(
    base_url, admin_token, user, hook
):
    alice, bob = await user("alice"), await user("bob")
    await register(bob)
    hook.answers = [(500, None)] * 2
    await alice.send_message(recipient_id=bob.user_id, content="hello")
    first = await hook.wait_for(2)
    app = console(base_url, admin_token)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.press("4")
        await settle(pilot, lambda: app.screen.query(PagedTable))
        table = app.screen.query_one(PagedTable)
        # The item turns dead once its last attempt is recorded: look again until it shows.
        for _ in range(100):
            if table.row_count:
                break
            await pilot.press("ctrl+r")
            await pilot.pause(0.1)
        (dead,) = table.items.values()
        assert dead["device_id"] == bob.device_id and dead["attempts"] == 2
        assert dead["last_error"] in table.get_row_at(0)
        await pilot.press("r")
        again = await hook.wait_for(3)
        await settle(pilot, lambda: table.row_count == 0)
        assert any("queued to be sent again" in n for n in notes(app))
    assert again[2]["delivery_id"] == first[0]["delivery_id"]
