"""End-to-end encrypted chat over a logged-in ``ChatdClient``: the network half of the SDK.

``E2EClient`` uploads the device's keys, fetches other devices' bundles when it
first writes to them, fans each message out as one ciphertext per device (the
chat's members' devices and this user's other devices), and reads its WebSocket:
it decrypts every ``new_message`` before acknowledging it with a
``delivery_receipt`` (so a message is never marked delivered that this device
could not keep), tops up one-time prekeys on ``keys_low`` and refetches a user's
bundles after ``devices_changed``. When the server refuses a send because the
map misses or names a device it does not expect (``bad_request``), it refetches
the bundles and retries with the same ``client_msg_id``.
"""

# The public API takes timeout= like the rest of chatd.client.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from chatd.client.e2e import protocol
from chatd.client.e2e.device import E2EDevice, Received
from chatd.client.e2e.errors import IdentityChanged, StoreMismatch
from chatd.client.e2e.store import E2EStore
from chatd.client.errors import ApiError
from chatd.client.rest import ChatdClient
from chatd.client.ws import WsSession

log = logging.getLogger("chatd.client.e2e")

#: Attempts of one send when the server names devices the map got wrong.
SEND_ATTEMPTS = 3
_EVENTS = ("new_message", "keys_low", "devices_changed")


@dataclass(slots=True)
class Outgoing:
    """A message being sent: what goes to the server, and the plaintext kept locally."""

    chat_id: str
    client_msg_id: str
    content: str
    type: str
    members: set[str]
    ciphertexts: dict[str, dict[str, str]]


_NAMED = re.compile(r"(missing|unknown) devices?: ([^;]+)")


def named_devices(error: ApiError) -> tuple[set[str], set[str]] | None:
    """The (missing, unknown) device ids a ``bad_request`` names, or None if it names none.

    chatd's error object lists them (``missing_devices``, ``unknown_devices``) and its
    message says ``missing devices: a, b; unknown devices: c``; either is enough.
    """
    found: dict[str, set[str]] = {"missing": set(), "unknown": set()}
    for kind, ids in _NAMED.findall(error.message):
        found[kind] |= {i.strip() for i in ids.split(",") if i.strip()}
    for kind in found:
        listed = error.details.get(f"{kind}_devices")
        if isinstance(listed, list):
            found[kind] |= {str(i) for i in listed}
    if not found["missing"] and not found["unknown"]:
        return None if "device" not in error.message.lower() else (set(), set())
    return found["missing"], found["unknown"]


def saved_login(store: E2EStore) -> dict[str, Any] | None:
    """``{user_id, device_id, token}`` of the device this store belongs to, if it was started."""
    return store.get("self", "account")


class E2EClient:
    """One device's encrypted messaging. ``async with E2EClient(client, store) as e2e:``.

    ``client`` is logged in (or built with the token of ``saved_login(store)``);
    ``store`` belongs to that device alone. Decrypted messages arrive on
    ``next_message``; other events (receipts, presence, typing) stay on ``ws``.
    """

    def __init__(
        self, client: ChatdClient, store: E2EStore, *, prekey_target: int = protocol.PREKEY_TARGET
    ) -> None:
        account = saved_login(store) or {}
        user_id = client.user_id or account.get("user_id")
        device_id = client.device_id or account.get("device_id")
        if not user_id or not device_id:
            raise StoreMismatch("log the client in first: the store has no device yet")
        client.user_id, client.device_id = user_id, device_id
        self.client = client
        self.device = E2EDevice(store, user_id, device_id)
        if client.token:
            store.put(
                "self",
                "account",
                {**account, "user_id": user_id, "device_id": device_id, "token": client.token},
            )
        self.store = store
        self.ws: WsSession | None = None
        self.prekey_target = prekey_target
        self.duplicates = 0  # deliveries recognised as already opened
        self.corrections = 0  # sends the server refused for their device list, then retried
        self._inbox: asyncio.Queue[Received] = asyncio.Queue()
        self._members: dict[str, set[str]] = {}
        self._stale: set[str] = set()
        self._sending: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        self._directory_lock = asyncio.Lock()  # one bundle fetch per user at a time

    @classmethod
    def resume(cls, base_url: str, store: E2EStore, **options: Any) -> E2EClient:
        """The client of the device this store was started with (its saved token)."""
        account = saved_login(store)
        if not account or not account.get("token"):
            raise StoreMismatch("this store has no saved login")
        client = ChatdClient(base_url, token=account["token"])
        client.user_id, client.device_id = account["user_id"], account["device_id"]
        return cls(client, store, **options)

    @property
    def user_id(self) -> str:
        return self.device.user_id

    @property
    def device_id(self) -> str:
        return self.device.device_id

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, *, connect: bool = True) -> E2EClient:
        """Upload what the server lacks of this device's keys, then read the WebSocket."""
        if not self.device.published and await self.client.key_count() > 0:
            # Another store gave this device keys: a second identity for it would leave
            # every peer's session with the first one unreadable here.
            raise StoreMismatch("this device has keys from another store: log in as a new device")
        self.device.rotate_signed_prekey_if_due()
        await self.publish_keys()
        held = await self.client.key_count()
        if held < self.prekey_target // 5:
            await self.replenish(held)
        if connect and self.ws is None:
            self.ws = self.client.connect(auto_delivery_receipts=False)
            hello = (await self.ws.open()).hello or {}
            if hello.get("device_id") not in (None, self.device_id):
                await self.ws.close()
                raise StoreMismatch("the token is another device's than the store's")
            self._reader = asyncio.get_running_loop().create_task(
                self._read(self.ws), name="chatd-e2e-reader"
            )
        return self

    async def close(self) -> None:
        """Stop reading and close the socket (the client and the store stay open)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def __aenter__(self) -> E2EClient:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- keys ----------------------------------------------------------------------

    async def publish_keys(self) -> None:
        """``PUT /keys`` whatever of the bundle the server does not hold yet."""
        body = self.device.upload_body()
        if body is not None:
            await self.client.upload_keys(**body)
            self.device.uploaded(body)

    async def replenish(self, held: int | None = None) -> None:
        """Top the server's one-time prekeys back up to ``prekey_target``."""
        if held is None:
            held = await self.client.key_count()
        self.device.add_prekeys(self.prekey_target - held)
        await self.publish_keys()

    # -- sending -------------------------------------------------------------------

    async def send(
        self,
        chat_id: str | None = None,
        text: str = "",
        *,
        recipient_id: str | None = None,
        type: str = "text",
        client_msg_id: str | None = None,
    ) -> dict[str, Any]:
        """Encrypt ``text`` for every device of the chat and send it; returns the ack.

        ``recipient_id`` instead of ``chat_id``: the direct chat with that user.
        Raises IdentityChanged (nothing sent) if a known device has a new identity
        key, ApiError for any other refusal.
        """
        out = await self.prepare(
            chat_id, text, recipient_id=recipient_id, type=type, client_msg_id=client_msg_id
        )
        return await self.post(out)

    async def prepare(
        self,
        chat_id: str | None = None,
        text: str = "",
        *,
        recipient_id: str | None = None,
        type: str = "text",
        client_msg_id: str | None = None,
    ) -> Outgoing:
        """Encrypt a message without sending it (``post`` sends it). Messages prepared
        together may be posted in any order: receivers cope with the ratchet order."""
        if chat_id is None:
            if recipient_id is None:
                raise ValueError("give chat_id or recipient_id")
            chat = await self.client.open_direct(recipient_id)
            chat_id = chat["chat_id"]
            self._members[chat_id] = {m["user_id"] for m in chat["members"]}
        out = Outgoing(
            chat_id=chat_id,
            client_msg_id=client_msg_id or str(uuid.uuid4()),
            content=text,
            type=type,
            members=await self._chat_members(chat_id),
            ciphertexts={},
        )
        await self._seal(out)
        return out

    async def post(self, out: Outgoing) -> dict[str, Any]:
        """Send a prepared message, retrying with the same client_msg_id when the
        server names devices the map misses or should not have."""
        self._sending.add(out.client_msg_id)
        try:
            for attempt in range(1, SEND_ATTEMPTS + 1):
                try:
                    ack = await self._post(out)
                except ApiError as exc:
                    if exc.code != "bad_request" or attempt == SEND_ATTEMPTS:
                        raise
                    named = named_devices(exc)
                    if named is None:
                        raise
                    log.info("devices to correct for chat %s: %s", out.chat_id, exc.message)
                    await self._correct(out, *named)
                    continue
                self.device.record_sent(
                    ack, content=out.content, type=out.type, client_msg_id=out.client_msg_id
                )
                return ack
            raise AssertionError("unreachable")
        finally:
            self._sending.discard(out.client_msg_id)

    async def _correct(self, out: Outgoing, missing: set[str], unknown: set[str]) -> None:
        """Fix the device lists after a refusal naming ``missing`` and ``unknown`` devices.

        Unknown devices are dropped without asking the server; each missing one is
        looked for by refetching the members' bundles, one member at a time, until
        all are found (a refetch spends one of each device's one-time prekeys).
        """
        self.corrections += 1
        self._members.pop(out.chat_id, None)
        out.members = await self._chat_members(out.chat_id)
        for user_id in sorted(out.members):
            known = self.store.get("directory", user_id)
            if known is not None and unknown & set(known["devices"]):
                kept = [d for d in known["devices"] if d not in unknown]
                self.store.put("directory", user_id, {"devices": kept})
        if not missing and not unknown:
            self._stale |= out.members
        for user_id in sorted(out.members):
            if not missing:
                break
            self._stale.add(user_id)
            missing -= {device for _, device in await self._devices({user_id})}
        await self._seal(out)

    async def _post(self, out: Outgoing) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "chat_id": out.chat_id,
            "content": "",
            "type": out.type,
            "client_msg_id": out.client_msg_id,
            "encrypted": True,
            "ciphertexts": out.ciphertexts,
        }
        if self.ws is not None and not self.ws.closed:
            return await self.ws.send_message(**fields)
        return await self.client.send_message(**fields)

    async def _seal(self, out: Outgoing) -> None:
        """Add a ciphertext for every device now expected; drop the ones no longer expected.

        Devices that already have one keep it (the ratchet moved on for them).
        """
        peers = await self._devices(out.members)
        wanted = {device for _, device in peers}
        out.ciphertexts = {d: c for d, c in out.ciphertexts.items() if d in wanted}
        todo = [p for p in peers if p[1] not in out.ciphertexts]
        out.ciphertexts |= await self.device.seal(
            todo,
            chat_id=out.chat_id,
            client_msg_id=out.client_msg_id,
            content=out.content,
            type=out.type,
        )

    async def _chat_members(self, chat_id: str) -> set[str]:
        members = self._members.get(chat_id)
        if members is None:
            try:
                found = (await self.client.get_group(chat_id))["members"]
            except ApiError as exc:
                if exc.code not in ("not_found", "forbidden", "bad_request"):
                    raise
                chats = {c["chat_id"]: c for c in await self.client.chats()}
                if chat_id not in chats:
                    raise
                found = chats[chat_id]["members"]
            members = self._members[chat_id] = {
                m["user_id"] if isinstance(m, dict) else str(m) for m in found
            }
        return members

    async def _devices(self, users: set[str]) -> list[tuple[str, str]]:
        """Every (user, device) a message to ``users`` must reach, sessions ready.

        A user's device list comes from the store, refetched (``GET /keys``) when
        unknown, stale, or when a listed device has no session.
        """
        async with self._directory_lock:
            return await self._devices_locked(users)

    async def _devices_locked(self, users: set[str]) -> list[tuple[str, str]]:
        peers: list[tuple[str, str]] = []
        changed: list[tuple[str, str]] = []
        for user_id in sorted(users):
            known = self.store.get("directory", user_id)
            devices = known["devices"] if known else None
            if (
                devices is None
                or user_id in self._stale
                or not all(self.device.has_session(user_id, d) for d in devices)
            ):
                devices = []
                for bundle in await self.client.get_keys(user_id):
                    device_id = bundle["device_id"]
                    if device_id == self.device_id:
                        continue
                    devices.append(device_id)
                    try:
                        await self.device.meet(user_id, bundle)
                    except IdentityChanged as exc:
                        changed += exc.devices
                self.store.put("directory", user_id, {"devices": devices})
                self._stale.discard(user_id)
            peers += [(user_id, d) for d in devices]
        changed += [p for p in peers if self.device.identity_changed(*p) and p not in changed]
        if changed:
            raise IdentityChanged(changed)
        return peers

    # -- trust ---------------------------------------------------------------------

    def safety_number(self, user_id: str) -> str:
        return self.device.safety_number(user_id)

    def accept_identity(self, user_id: str, device_id: str) -> None:
        """Trust a device's new identity key; its bundle is fetched again on the next send."""
        self.device.accept_identity(user_id, device_id)
        self._stale.add(user_id)

    def history(self, chat_id: str, *, limit: int = 100) -> list[Received]:
        return self.device.history(chat_id, limit=limit)

    # -- receiving -----------------------------------------------------------------

    async def next_message(self, *, timeout: float = 10.0) -> Received:
        """The next message opened from the socket (duplicates are not repeated here)."""
        async with asyncio.timeout(timeout):
            return await self._inbox.get()

    async def messages(self, count: int, *, timeout: float = 10.0) -> list[Received]:
        """The next ``count`` messages, all within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return [await self._inbox.get() for _ in range(count)]

    async def _read(self, ws: WsSession) -> None:
        while True:
            try:
                event = await ws.next_event(_EVENTS, timeout=3600)
            except TimeoutError:
                continue
            except ConnectionError:
                return
            try:
                await self.handle(event)
            except Exception:
                log.exception("chatd e2e: handling %s failed", event.get("type"))

    async def handle(self, event: dict[str, Any]) -> Received | None:
        """Act on one server event (the reader calls this for each)."""
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "keys_low":
            await self.replenish()  # the count now, not the event's: several may be queued
        elif kind == "devices_changed":
            self._devices_changed(str(data.get("user_id")), data.get("device_ids"))
        elif kind == "new_message":
            return await self._receive(data)
        return None

    def _devices_changed(self, user_id: str, device_ids: Any) -> None:
        """Forget revoked devices at once; fetch bundles of new ones on the next send."""
        known = self.store.get("directory", user_id)
        if known is None or not isinstance(device_ids, list):
            self._stale.add(user_id)
            return
        now = set(device_ids) - {self.device_id}
        kept = [d for d in known["devices"] if d in now]
        self.store.put("directory", user_id, {"devices": kept})
        if now - set(kept):
            self._stale.add(user_id)

    async def _receive(self, data: dict[str, Any]) -> Received | None:
        if data.get("client_msg_id") in self._sending and data.get("sender_id") == self.user_id:
            return None  # this device's own message, seen on a replay before its ack
        received = await self.device.open(data)
        if data.get("type") == "system":
            self._members.pop(received.chat_id, None)
        if received.duplicate:
            self.duplicates += 1
        else:
            self._inbox.put_nowait(received)
        if self.ws is not None:
            try:
                await self.ws.delivery_receipt(received.chat_id, received.message_id)
            except (ApiError, ConnectionError, TimeoutError) as exc:
                log.info("delivery receipt for %s not sent: %s", received.message_id, exc)
        return received
