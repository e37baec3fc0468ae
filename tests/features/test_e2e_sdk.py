"""End-to-end encrypted chats through a real chatd with the client SDK (chatd.client.e2e).

Every device decrypts exactly what was sent to it, in direct chats and groups,
across devices of one user, out of order, after a restart of the server and of a
client; and afterwards the server's files, log and /metrics hold none of the
plaintexts (checked by scripts/e2e_scan.py, the operator's command).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chatd.client import ChatdClient
from chatd.client.e2e import E2EStore, Received, StoreMismatch
from chatd.client.e2e.client import E2EClient
from tests.conftest import PASSWORD, signed_in_clients

ROOT = Path(__file__).resolve().parents[2]
SCAN = ROOT / "scripts" / "e2e_scan.py"


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {"limits": {"key_fetches_per_minute": 6000}}


class Devices:
    """E2E clients with their store files; closes them all at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.open: list[E2EClient] = []

    async def start(self, client: ChatdClient, name: str) -> E2EClient:
        store = E2EStore.open(self.folder / f"{name}.e2e", key=name.encode().ljust(32, b"k"))
        return await self.track(E2EClient(client, store))

    async def track(self, e2e: E2EClient) -> E2EClient:
        self.open.append(e2e)
        return await e2e.start()

    async def restart(self, e2e: E2EClient, name: str, url: str) -> E2EClient:
        """Stop a device's client and bring it back from its store alone."""
        await self.stop(e2e)
        store = E2EStore.open(self.folder / f"{name}.e2e", key=name.encode().ljust(32, b"k"))
        return await self.track(E2EClient.resume(url, store))

    async def stop(self, e2e: E2EClient) -> None:
        self.open.remove(e2e)
        await e2e.close()
        await e2e.client.aclose()
        e2e.store.close()

    async def close(self) -> None:
        for e2e in list(self.open):
            await self.stop(e2e)


@pytest.fixture
async def devices(tmp_path: Path):
    folder = tmp_path / "devices"
    folder.mkdir()
    made = Devices(folder)
    yield made
    await made.close()


async def texts(e2e: E2EClient, count: int, *, after_seq: int = 0) -> list[str | None]:
    """The next ``count`` chat messages a device opened, past ``after_seq`` (messages sent
    before a device existed have no ciphertext for it) and skipping group system messages."""
    got: list[Received] = []
    while len(got) < count:
        message = await e2e.next_message(timeout=30)
        if message.type != "system" and message.seq > after_seq:
            got.append(message)
    assert [(m.error, m.encrypted) for m in got] == [(None, True)] * count, got
    return [m.text for m in got]


async def nothing_more(e2e: E2EClient) -> None:
    with pytest.raises(TimeoutError):
        message = await e2e.next_message(timeout=0.3)
        if message.type == "system":
            await e2e.next_message(timeout=0.3)


def scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCAN), *args], capture_output=True, text=True, timeout=300
    )


async def test_encrypted_chats_survive_restarts_and_leave_no_plaintext_on_the_server(
    chatd_process, process_user, devices, tmp_path: Path, server_storage: str
):
    url = chatd_process.url
    alice_c, bob_c = await process_user("alice"), await process_user("bob")
    carol_c = await process_user("carol")
    async with signed_in_clients(url) as login:
        bob_phone_c = await login("bob", register=False)
        alice = await devices.start(alice_c, "alice")
        bob = await devices.start(bob_c, "bob")
        bob_phone = await devices.start(bob_phone_c, "bob-phone")
        carol = await devices.start(carol_c, "carol")
        sent: list[str] = []

        def say(text: str) -> str:
            sent.append(text)
            return text

        # Direct: alice -> both of bob's devices; bob's reply reaches alice and bob's phone.
        direct = (await alice.send(recipient_id=bob.user_id, text=say("hi bob, it's alice")))[
            "chat_id"
        ]
        assert await texts(bob, 1) == ["hi bob, it's alice"]
        assert await texts(bob_phone, 1) == ["hi bob, it's alice"]
        await bob.send(direct, say("hello alice, from bob's laptop"))
        assert await texts(alice, 1) == ["hello alice, from bob's laptop"]
        assert await texts(bob_phone, 1) == ["hello alice, from bob's laptop"]

        # A group of three, four devices; sent out of ratchet order.
        group = (await alice_c.create_group("plans", [bob.user_id, carol.user_id]))["group_id"]
        batch = [await alice.prepare(group, say(f"group secret {i}")) for i in range(3)]
        for i in (2, 0, 1):
            await alice.post(batch[i])
        posted = ["group secret 2", "group secret 0", "group secret 1"]
        for reader in (bob, bob_phone, carol):
            assert await texts(reader, 3) == posted
        await carol.send(group, say("carol agrees"))
        for reader in (alice, bob, bob_phone):
            assert await texts(reader, 1) == ["carol agrees"]

        # The server restarts; the sockets come back by themselves.
        chatd_process.kill(signal.SIGTERM)
        await chatd_process.wait()
        await chatd_process.start()
        for e2e in (alice, bob, bob_phone, carol):
            await e2e.ws.wait_connected(timeout=30)
        await bob_phone.send(group, say("after the server restart"))
        for reader in (alice, bob, carol):
            assert await texts(reader, 1) == ["after the server restart"]

        # Bob's laptop restarts from its store alone; what was sent meanwhile is replayed.
        bob = await devices.restart(bob, "bob", url)
        assert bob.device.has_session(alice.user_id, alice.device_id)
        await alice.send(direct, say("while you were away"))
        assert await texts(bob, 1) == ["while you were away"]
        assert await texts(bob_phone, 1) == ["while you were away"]
        await bob.send(direct, say("back, with my old keys"))
        assert await texts(alice, 1) == ["back, with my old keys"]
        assert await texts(bob_phone, 1) == ["back, with my old keys"]
        kept = [m.text for m in bob.history(direct)]
        assert kept[-2:] == ["while you were away", "back, with my old keys"]
        assert "hi bob, it's alice" in kept
        # Nothing was delivered twice to the app.
        for e2e in (alice, bob, bob_phone, carol):
            await nothing_more(e2e)

        # The server keeps none of it: files, log, metrics (and CQL rows on Cassandra).
        needles = tmp_path / "needles.txt"
        needles.write_text("\n".join(sent) + "\n")
        result = scan(
            "--config",
            str(chatd_process.config),
            "--needles-file",
            str(needles),
            "--path",
            str(chatd_process.log_path),
            "--url",
            url,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "no plaintext" in result.stdout
        if server_storage == "scylla":  # read back through CQL, every table
            assert re.search(r"[1-9]\d* rows of keyspace", result.stdout), result.stdout
        # The scan finds what the server does keep in the clear (the group's name).
        control = scan("--config", str(chatd_process.config), "--needle", "plans")
        assert control.returncode == 1, control.stdout + control.stderr
        assert (await alice_c.messages(direct))["messages"][0]["content"] == ""


async def test_a_device_added_or_revoked_later_is_covered_without_the_app_noticing(
    user, device, devices
):
    alice_c, bob_c = await user(), await user()
    alice = await devices.start(alice_c, "alice")
    bob = await devices.start(bob_c, "bob")
    chat = (await alice.send(recipient_id=bob.user_id, text="one"))["chat_id"]
    assert await texts(bob, 1) == ["one"]
    # Bob's device acknowledged it once decrypted, so the server dropped its ciphertext.
    for _ in range(100):
        [kept] = (await bob_c.messages(chat))["messages"]
        if kept["ciphertext"] is None:
            break
        await asyncio.sleep(0.05)
    assert (kept["content"], kept["ciphertext"]) == ("", None)
    # Alice is offline when bob adds a phone: her next send is refused for the missing
    # device, and the SDK refetches and retries with the same client_msg_id.
    await alice.close()
    phone = await devices.start(await device(bob_c), "bob-phone")
    ack = await alice.send(chat, "two")
    assert (ack["status"], alice.corrections) == ("sent", 1)
    assert await texts(bob, 1) == ["two"]
    assert await texts(phone, 1, after_seq=1) == ["two"]
    # Online, she hears of the revocation (devices_changed) and leaves the phone out.
    await alice.start()
    await bob_c.revoke_device(phone.device_id)
    for _ in range(100):
        if phone.device_id not in alice.store.get("directory", bob.user_id)["devices"]:
            break
        await asyncio.sleep(0.05)
    await alice.send(chat, "three")
    assert await texts(bob, 1) == ["three"]
    assert alice.corrections == 1
    history = await alice_c.messages(chat)
    assert [m["content"] for m in history["messages"]] == ["", "", ""]


async def test_a_device_that_lost_its_store_must_log_in_again(user, devices, tmp_path: Path):
    alice_c = await user()
    await devices.start(alice_c, "alice")
    # Same token, a new empty store: it would give the device a second identity.
    fresh = E2EStore.open(tmp_path / "wiped.e2e", key=b"w" * 32)
    with pytest.raises(StoreMismatch):
        await E2EClient(alice_c, fresh).start()
    fresh.close()


async def test_keys_low_tops_the_one_time_prekeys_back_up(user, devices):
    alice_c, bob_c = await user(), await user()
    bob = await devices.start(bob_c, "bob")
    assert await bob_c.key_count() == 100
    for _ in range(90):
        await alice_c.get_keys(bob.user_id)
    # Without the top-up 10 would be left; keys_low came at 19 and bob uploaded 81 more.
    for _ in range(100):
        if await bob_c.key_count() > 50:
            break
        await asyncio.sleep(0.05)
    assert 50 < await bob_c.key_count() <= 100


class Terminal:
    """examples/e2e_chat.py in a child process, typed into and read like a terminal."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen = ""

    @classmethod
    async def open(cls, url: str, me: str, peer: str, folder: Path) -> Terminal:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "examples" / "e2e_chat.py"),
            me,
            "--to",
            peer,
            "--server",
            url,
            "--password",
            PASSWORD,
            "--store",
            str(folder / f"{me}.e2e"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "CHATD_E2E_PASSPHRASE": f"{me} passphrase"},
        )
        terminal = cls(proc)
        await terminal.wait_for("type a message")
        return terminal

    async def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """The first match of the regular expression ``pattern`` in the output so far."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while (found := re.search(pattern, self.seen)) is None:
                chunk = await self.proc.stdout.read(4096)
                assert chunk, f"the example exited: {self.seen}"
                self.seen += chunk.decode()
        return found


@pytest.mark.sqlite_only
async def test_the_example_lets_two_people_chat_from_two_terminals(
    chatd_process, process_user, tmp_path: Path
):
    await process_user("alice")
    await process_user("bob")
    bob = await Terminal.open(chatd_process.url, "bob", "alice", tmp_path)
    alice = await Terminal.open(chatd_process.url, "alice", "bob", tmp_path)
    await alice.type("meet me at the usual place")
    await bob.wait_for("alice: meet me at the usual place")
    await bob.type("on my way")
    await alice.wait_for("bob: on my way")
    for terminal in (alice, bob):
        await terminal.type("/safety")
    numbers = [(await t.wait_for(r"(\d{5} ){11}\d{5}")).group() for t in (alice, bob)]
    assert numbers[0] == numbers[1]
    for terminal in (alice, bob):
        await terminal.type("/quit")
        assert await asyncio.wait_for(terminal.proc.wait(), 30) == 0
