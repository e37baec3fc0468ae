"""Push notifications through the webhook provider, to a real local receiver.

Who is notified (offline devices only, never the sending one), collapse per
chat, cancel on connect, retries with one delivery_id, dead items, pruning,
targets' endpoints and their checks, and live delivery untouched by a slow or
failing provider.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from chatd.client import ApiError
from chatd.core.ports.push import Outcome, PushResult
from tests.conftest import fast_push
from tests.webhook_receiver import WebhookReceiver

PAYLOAD_KEYS = {
    "type", "chat_id", "message_id", "seq", "sender_id", "sender_name", "chat_title",
    "unread_count", "timestamp",
}  # fmt: skip


@pytest.fixture
def config_overrides(hook):
    return fast_push(hook, max_attempts=3)


async def register(client, token: str | None = None) -> None:
    await client.set_push(client.device_id, "webhook", token=token or f"tok-{client.device_id}")


async def quiet(hook: WebhookReceiver, seconds: float = 0.6) -> int:
    """How many requests arrived by now, after letting anything in flight land."""
    await asyncio.sleep(seconds)
    return len(hook.received)


async def test_offline_devices_get_one_signed_notification_online_and_sending_ones_none(
    user, device, hook
):
    alice, bob = await user(), await user()
    alice_other, bob_online = await device(alice), await device(bob)
    for client in (alice, alice_other, bob, bob_online):
        await register(client)
    async with bob_online.connect() as bob_ws:
        sent = await alice.send_message(recipient_id=bob.user_id, content="secret words")
        await bob_ws.next_event("new_message")
        received = await hook.wait_for(2)
        assert await quiet(hook) == 2
    assert hook.bad_signatures == 0
    assert {r["device_id"] for r in received} == {bob.device_id, alice_other.device_id}
    to_bob = hook.for_device(bob.device_id)[0]
    assert to_bob["user_id"] == bob.user_id and to_bob["token"] == f"tok-{bob.device_id}"
    note = to_bob["notification"]
    assert set(note) == PAYLOAD_KEYS  # no content: include_content is off
    assert note["type"] == "new_message" and note["chat_id"] == sent["chat_id"]
    assert note["message_id"] == sent["message_id"] and note["seq"] == sent["seq"]
    assert note["sender_id"] == alice.user_id and note["sender_name"] == alice.username
    assert note["chat_title"] is None and note["unread_count"] == 1
    assert hook.for_device(alice_other.device_id)[0]["notification"]["unread_count"] == 0


async def test_one_waiting_notification_per_chat_keeps_the_latest(user, hook, services):
    alice, bob, carol = await user(), await user(), await user()
    await register(bob)
    hook.answers = [(503, "1")]  # the first try fails: the item waits a second
    first = await alice.send_message(recipient_id=bob.user_id, content="one")
    await hook.wait_for(1)
    for n in range(3):
        await alice.send_message(recipient_id=bob.user_id, content=f"more {n}")
    other = await carol.send_message(recipient_id=bob.user_id, content="elsewhere")
    received = await hook.wait_for(3, timeout=5)
    assert await quiet(hook, 1.0) == 3
    by_chat: dict[str, list] = {}
    for r in received:
        by_chat.setdefault(r["notification"]["chat_id"], []).append(r["notification"])
    assert [n["seq"] for n in by_chat[first["chat_id"]]] == [1, 4]
    assert by_chat[first["chat_id"]][-1]["unread_count"] == 4
    assert [n["seq"] for n in by_chat[other["chat_id"]]] == [1]
    # A replaced notification is a new one: its delivery_id is new.
    assert received[0]["delivery_id"] != received[-1]["delivery_id"] or len(received) == 3


async def test_a_device_that_connects_cancels_what_waits_for_it(user, hook, services):
    alice, bob = await user(), await user()
    await register(bob)
    hook.answers = [(503, "2")]
    await alice.send_message(recipient_id=bob.user_id, content="hello")
    await hook.wait_for(1)
    async with bob.connect() as bob_ws:
        await bob_ws.next_event("new_message")  # the replay
        await asyncio.sleep(0.3)
    assert await quiet(hook, 2.5) == 1
    assert await services.storage.push.depth() == 0


async def test_a_group_notification_carries_the_current_title(user, hook):
    alice, bob = await user(), await user()
    await register(bob)
    group = await alice.create_group("Book club", [bob.user_id])
    await alice.send_message(chat_id=group["group_id"], content="one")
    first = (await hook.wait_for(1))[0]  # the group's creation or "one"
    assert first["notification"]["chat_title"] == "Book club"
    await alice.update_group(group["group_id"], name="Reading club")
    sent = await alice.send_message(chat_id=group["group_id"], content="two")
    for _ in range(100):
        last = hook.received[-1]["notification"]
        if last["message_id"] == sent["message_id"]:
            break
        await asyncio.sleep(0.05)
    assert last["message_id"] == sent["message_id"] and last["chat_title"] == "Reading club"


async def test_retries_keep_one_delivery_id_until_delivered(user, hook, services):
    alice, bob = await user(), await user()
    await register(bob)
    hook.answers = [(503, None), (500, None)]
    await alice.send_message(recipient_id=bob.user_id, content="hello")
    received = await hook.wait_for(3)
    assert await quiet(hook) == 3
    assert len({r["delivery_id"] for r in received}) == 1
    metrics = await alice.metrics()
    assert 'chatd_push_sent_total{provider="webhook"} 1.0' in metrics
    assert 'chatd_push_failed_total{provider="webhook",reason="http_503"} 1.0' in metrics
    assert "chatd_push_outbox_depth" in metrics


async def test_dead_after_max_attempts_then_an_admin_retry_sends_it_again(user, hook, services):
    alice, bob = await user(), await user()
    await register(bob)
    hook.answers = [(500, None)] * 3
    await alice.send_message(recipient_id=bob.user_id, content="hello")
    received = await hook.wait_for(3)
    assert await quiet(hook) == 3
    await services.admin.set_admin("cli", alice.user_id, True)
    page = await alice.request("GET", "/admin/push", params={"limit": 10})
    (dead,) = page["dead"]
    assert page["next_cursor"] is None
    assert dead["id"] == received[0]["delivery_id"]
    assert dead["provider"] == "webhook"
    assert dead["device_id"] == bob.device_id and dead["attempts"] == 3
    assert dead["last_error"] == "http_500"
    assert 'chatd_push_dead_total{provider="webhook"} 1.0' in await alice.metrics()

    await alice.request("POST", f"/admin/push/{dead['id']}/retry")
    again = await hook.wait_for(4)
    assert again[3]["delivery_id"] == dead["id"]
    assert (await alice.request("GET", "/admin/push"))["dead"] == []
    (entry, *_) = (await alice.request("GET", "/admin/audit"))["entries"]
    assert (entry["action"], entry["target_id"]) == ("push.retry", dead["id"])
    with pytest.raises(ApiError) as gone:
        await alice.request("POST", f"/admin/push/{dead['id']}/retry")
    assert gone.value.status == 404


async def test_dead_notifications_are_deleted_after_the_retention(
    aiohttp_server, tmp_path, server_overrides, hook
):
    from chatd.app import build_app
    from tests.conftest import merge, services_of, signed_in_clients, test_config

    two_seconds = {"push": {"dead_retention_days": 2 / 86_400}}
    config = test_config(tmp_path / "data", merge(server_overrides, two_seconds))
    server = await aiohttp_server(build_app(config))
    async with signed_in_clients(str(server.make_url("")).rstrip("/")) as make:
        alice, bob = await make(), await make()
        await services_of(server).admin.set_admin("cli", alice.user_id, True)
        await register(bob)
        hook.answers = [(500, None)] * 3
        await alice.send_message(recipient_id=bob.user_id, content="hello")
        await hook.wait_for(3)
        listed = []
        for _ in range(100):  # buried once its third answer is recorded
            listed = (await alice.request("GET", "/admin/push"))["dead"]
            if listed:
                break
            await asyncio.sleep(0.05)
        assert [d["device_id"] for d in listed] == [bob.device_id]
        for _ in range(120):  # 2 s old, then the next sweep (every 0.5 s here)
            if not (await alice.request("GET", "/admin/push"))["dead"]:
                break
            await asyncio.sleep(0.05)
        assert (await alice.request("GET", "/admin/push"))["dead"] == []
        with pytest.raises(ApiError) as gone:
            await alice.request("POST", f"/admin/push/{listed[0]['id']}/retry")
        assert gone.value.status == 404


async def test_a_dead_notification_is_kept_within_the_retention(user, hook, services):
    alice, bob = await user(), await user()
    await register(bob)
    hook.answers = [(500, None)] * 3
    await alice.send_message(recipient_id=bob.user_id, content="hello")
    await hook.wait_for(3)
    await asyncio.sleep(0.5)
    (dead,), _ = await services.storage.push.dead(10)
    day = 86_400_000
    assert await services.push.expire_dead(now=dead.dead_at + 29 * day) == 0  # default: 30 days
    assert await services.push.expire_dead(now=dead.dead_at + 30 * day + 1) == 1
    assert await services.storage.push.dead(10) == ([], None)


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_target_is_deleted(user, hook, status):
    alice, bob = await user(), await user()
    await register(bob)
    hook.answers = [(status, None)]
    await alice.send_message(recipient_id=bob.user_id, content="hello")
    await hook.wait_for(1)
    for _ in range(50):
        try:
            await bob.request("GET", f"/devices/{bob.device_id}/push")
        except ApiError as exc:
            assert exc.code == "not_found"
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the target was not deleted")
    await alice.send_message(recipient_id=bob.user_id, content="again")
    assert await quiet(hook) == 1


async def test_target_endpoints_and_who_may_use_them(user, device, services):
    alice, bob = await user(), await user()
    bob_other = await device(bob)
    with pytest.raises(ApiError) as refused:
        await bob_other.set_push(bob.device_id, "webhook", token="t")
    assert refused.value.code == "forbidden"
    with pytest.raises(ApiError) as hidden:
        await alice.set_push(bob.device_id, "webhook", token="t")
    assert hidden.value.code == "not_found"
    for body in (
        {"provider": "fcm", "token": "t"},  # not enabled here
        {"provider": "nonsense", "token": "t"},
        {"provider": "webhook"},  # the webhook needs a token
        {"token": "t"},
        {"provider": "webhook", "token": "t", "colour": "blue"},
    ):
        with pytest.raises(ApiError) as bad:
            await bob.request("PUT", f"/devices/{bob.device_id}/push", json=body)
        assert bad.value.code == "bad_request", body
    with pytest.raises(ApiError) as missing:
        await bob.request("GET", f"/devices/{bob.device_id}/push")
    assert missing.value.code == "not_found"

    await bob.set_push(bob.device_id, "webhook", token="t", endpoint="https://93.184.215.14/x")
    target = await bob.request("GET", f"/devices/{bob.device_id}/push")
    assert target["provider"] == "webhook" and target["endpoint"] == "https://93.184.215.14/x"
    assert target["registered_at"].endswith("Z")
    with pytest.raises(ApiError) as other:
        await bob_other.request("GET", f"/devices/{bob.device_id}/push")
    assert other.value.code == "forbidden"
    await bob.delete_push(bob.device_id)
    with pytest.raises(ApiError):
        await bob.request("GET", f"/devices/{bob.device_id}/push")

    await bob.set_push(bob.device_id, "webhook", token="t")
    device_id = bob.device_id
    await bob.logout()
    assert await services.storage.push.get_target(device_id) is None
    await bob_other.set_push(bob_other.device_id, "webhook", token="t")
    await bob_other.revoke_device(bob_other.device_id)
    assert await services.storage.push.get_target(bob_other.device_id) is None


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://127.0.0.1/push",
        "https://10.1.2.3/push",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/push",
        "https://[::ffff:127.0.0.1]/push",
        "https://localhost/push",
        "http://93.184.215.14/push",  # not https
    ],
)
async def test_endpoints_on_private_addresses_are_refused(user, endpoint):
    bob = await user()
    with pytest.raises(ApiError) as refused:
        await bob.set_push(bob.device_id, "webhook", token="t", endpoint=endpoint)
    assert refused.value.code == "bad_request"


async def test_a_hanging_provider_never_delays_live_delivery(user, device, hook):
    alice, bob = await user(), await user()
    bob_offline = await device(bob)
    await register(bob_offline)
    hook.hang = True
    async with bob.connect() as bob_ws:
        await alice.send_message(recipient_id=bob.user_id, content="warm up")
        await bob_ws.next_event("new_message")
        await hook.wait_for(1)  # the provider is now stuck on a request
        delays = []
        for n in range(20):
            # From the ack (the message is stored) to its frame on bob's socket.
            await alice.send_message(recipient_id=bob.user_id, content=f"live {n}")
            stored = time.monotonic()
            await bob_ws.next_event("new_message", timeout=5)
            delays.append(time.monotonic() - stored)
    assert max(delays) < 0.5, delays


async def test_a_raising_provider_never_delays_live_delivery(user, device, hook, services):
    alice, bob = await user(), await user()
    bob_offline = await device(bob)
    await register(bob_offline)
    provider = services.push.providers["webhook"]
    calls = 0

    async def broken(batch):
        nonlocal calls
        calls += 1
        raise RuntimeError("a provider bug")

    provider.send = broken  # type: ignore[method-assign]
    async with bob.connect() as bob_ws:
        delays = []
        for n in range(20):
            # From the ack (the message is stored) to its frame on bob's socket.
            await alice.send_message(recipient_id=bob.user_id, content=f"live {n}")
            stored = time.monotonic()
            await bob_ws.next_event("new_message", timeout=5)
            delays.append(time.monotonic() - stored)
    assert max(delays) < 0.5, delays
    await asyncio.sleep(0.3)
    assert calls >= 1
    assert 'reason="provider_error"' in await alice.metrics()


async def test_content_only_when_configured_and_never_for_encrypted_messages():
    from chatd.core.services.notify import payload_for

    message = {
        "chat_id": "c", "message_id": "m", "seq": 3, "sender_id": "u", "timestamp": "t",
        "content": "hello",
    }  # fmt: skip
    kwargs = {"sender_name": "Al", "chat_title": None, "unread_count": 2}
    assert "content" not in payload_for(message, include_content=False, **kwargs)
    assert payload_for(message, include_content=True, **kwargs)["content"] == "hello"
    encrypted = {**message, "encrypted": True}
    assert "content" not in payload_for(encrypted, include_content=True, **kwargs)


async def test_push_test_command_sends_through_the_provider(user, hook, services):
    bob = await user()
    await register(bob)
    target, result = await services.push.send_test(bob.device_id)
    assert target.provider == "webhook" and result == PushResult(Outcome.DELIVERED)
    (received,) = await hook.wait_for(1)
    assert received["notification"]["type"] == "test"


async def test_chatd_push_test_prints_the_provider_answer_and_exits_0_only_if_delivered(
    user, hook, tmp_path, server_overrides
):
    """The command itself, on the server's store and configuration, from its own process
    state (a thread here, so this loop keeps serving the receiver)."""
    from typer.testing import CliRunner

    from chatd.cli import app
    from tests.conftest import base_config
    from tests.toml_writer import write_toml

    config = str(
        write_toml(tmp_path / "chatd.toml", base_config(tmp_path / "data", server_overrides))
    )

    async def push_test(device_id: str):
        args = ["push", "test", device_id, "--config", config]
        return await asyncio.to_thread(CliRunner().invoke, app, args)

    bob, carol = await user(), await user()
    await register(bob)
    delivered = await push_test(bob.device_id)
    assert delivered.exit_code == 0, delivered.output
    assert delivered.output.splitlines() == ["provider: webhook", "outcome:  delivered"]
    (received,) = await hook.wait_for(1)
    assert received["device_id"] == bob.device_id and received["notification"]["type"] == "test"
    assert hook.bad_signatures == 0

    hook.answers = [(503, "7")]
    later = await push_test(bob.device_id)
    assert later.exit_code == 1
    assert later.output.splitlines() == [
        "provider: webhook", "outcome:  retry", "reason:   http_503", "retry after: 7 s",
    ]  # fmt: skip
    hook.answers = [(410, None)]
    gone = await push_test(bob.device_id)
    assert gone.exit_code == 1 and "outcome:  gone" in gone.output
    assert len(hook.received) == 3

    no_target = await push_test(carol.device_id)
    assert no_target.exit_code == 1 and "no push target" in no_target.output
    assert len(hook.received) == 3


async def test_the_send_time_guard_refuses_loopback_literals_and_names(hook):
    """A device endpoint that resolved to a public address at registration and to
    loopback later (DNS rebinding) is refused when the request connects."""
    from chatd.push.http import PushHTTP, TransportError

    http = PushHTTP(timeout_s=2, guarded=True, allow_private=False)
    await http.open()
    port = hook.url.split(":")[2].split("/")[0]
    try:
        for url in (hook.url, f"http://localhost:{port}/hook"):
            with pytest.raises(TransportError) as refused:
                await http.post(url, data=b"{}", headers={})
            assert refused.value.reason == "address_refused"
    finally:
        await http.close()
    assert hook.received == [] and hook.bad_signatures == 0
