"""The push outbox is durable and shared: it survives kill -9, and two chatd
instances on one store (an SQLite file, a ScyllaDB keyspace) send each attempt once."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from chatd.app import build_app
from tests.conftest import fast_push, test_config


@pytest.fixture
def config_overrides(hook):
    return fast_push(hook, max_attempts=5)


async def test_a_waiting_notification_survives_kill_9(process_user, chatd_process, hook):
    alice, bob = await process_user(), await process_user()
    await bob.set_push(bob.device_id, "webhook", token="t")
    hook.answers = [(503, "2")]  # waits two seconds for its retry...
    await alice.send_message(recipient_id=bob.user_id, content="hello")
    (first,) = await hook.wait_for(1)
    await asyncio.sleep(0.5)  # its answer recorded (a claim cut short waits out its lease)
    chatd_process.kill()  # ...and the server dies meanwhile
    await chatd_process.wait()
    await chatd_process.start()
    received = await hook.wait_for(2, timeout=20)
    assert received[1]["delivery_id"] == first["delivery_id"]
    assert received[1]["notification"] == first["notification"]


@pytest.fixture
async def node_b(aiohttp_server, tmp_path, server_overrides, server):
    """A second chatd instance on the first one's store (its SQLite file or keyspace)."""
    app = build_app(test_config(tmp_path / "data", server_overrides))
    return await aiohttp_server(app)


async def test_two_instances_on_one_store_send_each_attempt_once(user, node_b, hook):
    alice = await user()
    recipients = [await user() for _ in range(8)]
    for bob in recipients:
        await bob.set_push(bob.device_id, "webhook", token="t")
    # Every first try fails, so both instances' workers race for every retry.
    hook.fail_first_try = True
    for bob in recipients:
        await alice.send_message(recipient_id=bob.user_id, content="hello")
    received = await hook.wait_for(2 * len(recipients), timeout=20)
    await asyncio.sleep(1.0)
    counts = Counter(r["delivery_id"] for r in hook.received)
    assert len(counts) == len(recipients)
    assert set(counts.values()) == {2}, counts
    assert {r["device_id"] for r in received} == {b.device_id for b in recipients}
