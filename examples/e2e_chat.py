#!/usr/bin/env python3
"""End-to-end encrypted chat between two people in two terminals, through a chatd server.

    # terminal 1                                  # terminal 2
    python examples/e2e_chat.py alice --to bob    python examples/e2e_chat.py bob --to alice

Options: ``--server http://127.0.0.1:8080`` (default), ``--store alice.e2e``
(default ``<username>.e2e``), ``--password`` (else asked; registers the account
if it does not exist yet). The store passphrase comes from ``CHATD_E2E_PASSPHRASE``
or is asked. The first run logs in as a new device and saves its token in the
store; later runs resume that device, so its sessions and history come back.

Type a line to send it. ``/safety`` prints the safety number to compare with
the other person (read it aloud, or compare it on both screens);
``/history`` prints the kept messages; ``/quit`` leaves. If the other person's
device shows a new identity key, sending stops until you type ``/accept``.
Needs ``pip install chatd[e2e]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
import threading

from chatd.client import ApiError, ChatdClient
from chatd.client.e2e import E2EStore, IdentityChanged, Received, grouped
from chatd.client.e2e.client import E2EClient, saved_login


async def sign_in(args: argparse.Namespace, store: E2EStore) -> E2EClient:
    """The device this store belongs to, or a new login (registering if needed)."""
    if saved_login(store):
        return E2EClient.resume(args.server, store)
    password = args.password or getpass.getpass(f"password for {args.username}: ")
    client = ChatdClient(args.server)
    with contextlib.suppress(ApiError):  # taken: it is (probably) ours already
        await client.register(args.username, password)
    await client.login(args.username, password, device_name="e2e_chat.py")
    return E2EClient(client, store)


async def find_user(client: ChatdClient, username: str) -> str:
    for user in await client.search_users(username):
        if user["username"] == username:
            return user["user_id"]
    raise SystemExit(f"no user named {username!r} on this server")


def show(message: Received, who: str) -> None:
    if message.error:
        print(f"\r[{who}: message {message.message_id} unreadable: {message.error}]")
    else:
        flag = " (NEW SAFETY NUMBER: check it with /safety)" if message.identity_changed else ""
        print(f"\r{who}: {message.text}{flag}")
    print("> ", end="", flush=True)


def read_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Feed stdin's lines to ``queue`` (None at its end); runs in a daemon thread, so a
    pending read never keeps the program from exiting."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def chat(args: argparse.Namespace) -> None:
    passphrase = os.environ.get("CHATD_E2E_PASSPHRASE") or getpass.getpass("store passphrase: ")
    store = E2EStore.open(args.store or f"{args.username}.e2e", passphrase=passphrase)
    e2e = await sign_in(args, store)
    async with e2e.client, e2e:
        peer_id = await find_user(e2e.client, args.to)
        chat_id = (await e2e.client.open_direct(peer_id))["chat_id"]
        print(f"signed in as {args.username} (device {e2e.device_id}); chatting with {args.to}")
        print("type a message, /safety, /history or /quit")
        print("> ", end="", flush=True)
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        threading.Thread(target=read_lines, args=(loop, lines), daemon=True).start()
        changed: list[tuple[str, str]] = []
        try:
            while True:
                typed = asyncio.create_task(lines.get())
                incoming = asyncio.create_task(e2e.next_message(timeout=3600))
                done, _ = await asyncio.wait({typed, incoming}, return_when=asyncio.FIRST_COMPLETED)
                for task in (typed, incoming):
                    if task not in done:
                        task.cancel()
                if incoming in done and not incoming.cancelled() and not incoming.exception():
                    received = incoming.result()
                    if received.chat_id == chat_id:
                        show(received, "me" if received.sender_id == e2e.user_id else args.to)
                if typed not in done:
                    continue
                line = typed.result()
                if line is None or line == "/quit":
                    return
                if line == "/safety":
                    print(grouped(e2e.safety_number(peer_id)))
                elif line == "/history":
                    for m in e2e.history(chat_id):
                        who = "me" if m.sender_id == e2e.user_id else args.to
                        print(f"  {m.seq:>4} {who}: {m.text if m.text is not None else m.error}")
                elif line == "/accept":
                    for user_id, device_id in changed:
                        e2e.accept_identity(user_id, device_id)
                    changed.clear()
                    print("new identity keys trusted; /safety shows the new number")
                elif line:
                    try:
                        await e2e.send(chat_id, line)
                    except IdentityChanged as exc:
                        changed = exc.devices
                        print(f"not sent: {exc}. Compare /safety, then /accept to trust it.")
                print("> ", end="", flush=True)
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="end-to-end encrypted chat over chatd")
    parser.add_argument("username")
    parser.add_argument("--to", required=True, help="the username to chat with")
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    parser.add_argument("--store", help="the local encrypted store (default <username>.e2e)")
    parser.add_argument("--password", help="account password (else asked when needed)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(chat(parser.parse_args()))


if __name__ == "__main__":
    main()
