"""Accounts, devices and tokens: registration, login, logout, profiles, bans.

A token is the credential of one device. Revoking a device (logout, device
removal, password change) or banning its user takes effect at once: REST calls
check the store on every request, and open sockets are closed through the
revocation feed that every node polls.

Password guessing is held back by failed-login counts per (username, address),
per address and per username; a correct password gives its attempt back. So an
attacker sending wrong passwords from elsewhere never locks the owner out of
their own address, and a login that carries a valid token of the same user (a
device the owner already has) skips the per-username counts altogether.
Hashing itself goes through a ``WorkGate``: a flood of logins is refused with
``rate_limited`` rather than queued behind the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.errors import ChatdError, bad_request, not_found
from chatd.core.events import Invalidation
from chatd.core.ids import new_id, new_token, now_ms, token_hash
from chatd.core.models import GROUP_ADD, Device, User
from chatd.core.ports.passwords import PasswordHasher
from chatd.core.ports.storage import Storage
from chatd.core.ratelimit import TokenBucket, take_all
from chatd.core.services.fanout import FanOut
from chatd.core.workgate import WorkGate

log = logging.getLogger(__name__)
Registration = Literal["open", "invite", "closed"]
DAY_MS = 86_400_000
MAX_PASSWORD = 1024


class AccountService:
    def __init__(
        self,
        storage: Storage,
        hasher: PasswordHasher,
        fanout: FanOut,
        *,
        registration: Registration = "open",
        token_ttl_days: int = 365,
        login_attempts_per_minute: int = 10,
        login_attempts_per_address_per_minute: int = 30,
        login_attempts_per_username_per_minute: int = 60,
        registrations_per_address_per_hour: int = 10,
        min_password_length: int = 6,
        hash_gate: WorkGate | None = None,
    ) -> None:
        self._storage = storage
        self._hasher = hasher
        self._fanout = fanout
        self.registration = registration
        self._token_ttl_ms = token_ttl_days * DAY_MS
        self._min_password = min_password_length
        self._per_pair = TokenBucket.per_period(
            login_attempts_per_minute, 60, what="login attempts for this username"
        )
        self._per_address = TokenBucket.per_period(
            login_attempts_per_address_per_minute, 60, what="login attempts from this address"
        )
        self._per_username = TokenBucket.per_period(
            login_attempts_per_username_per_minute, 60, what="login attempts for this username"
        )
        self._registrations = TokenBucket.per_period(
            registrations_per_address_per_hour, 3600, what="registrations from this address"
        )
        self._hash_gate = hash_gate or WorkGate(2, 32, what="password checks")
        self._dummy_hash: str | None = None
        #: Told of revoked devices (user, device ids): the push service drops their targets.
        self.on_revoked: Callable[[str, list[str]], Awaitable[None]] | None = None

    async def open(self) -> None:
        """Hash a throw-away password once, at start-up: a login for an unknown
        username verifies against it, so it costs what a real one does, and the
        first such login does not pay for two hashes."""
        self._dummy_hash = await self._hasher.hash(new_token())

    # -- registration and login ---------------------------------------------

    async def register(self, data: Any, *, address: str = "") -> User:
        """``address``: the client's, for the per-address limit on registrations."""
        data = validate.body(data)
        username = validate.username(data.get("username"))
        password = self._password(data)
        display_name = validate.string(data, "display_name", required=False, max_len=64)
        if self.registration == "closed":
            raise ChatdError("forbidden", "registration is closed on this server")
        self._registrations.take(address)
        if await self._storage.users.get_by_name(username):
            raise ChatdError("conflict", "username is taken")
        if self.registration == "invite":
            code = validate.string(data, "invite_code", required=False, max_len=128)
            if not code or not await self._storage.invites.consume(code, now_ms()):
                raise ChatdError("forbidden", "a valid invite_code is required to register")
        return await self.create_user(username, password, display_name=display_name)

    async def create_user(
        self,
        username: str,
        password: str,
        *,
        display_name: str | None = None,
        is_admin: bool = False,
    ) -> User:
        """Create a user without registration policy (for admins and the CLI)."""
        username = validate.username(username)
        self._check_password(password)
        user = User(
            user_id=new_id(),
            username=username,
            display_name=display_name or username,
            password_hash=await self._hash(password),
            created_at=now_ms(),
            is_admin=is_admin,
        )
        await self._storage.users.create(user)
        return user

    async def login(
        self, data: Any, *, address: str = "", token: str | None = None
    ) -> tuple[str, Device]:
        """A new device for the user, if the password is right.

        ``address``: the client's; ``token``: a bearer token the request carried,
        if any. A valid token of the same user frees the login from the
        per-username counts (its holder is one of the user's devices).
        """
        data = validate.body(data)
        name = data.get("username")
        password = data.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise bad_request("username and password are required strings")
        device_name = validate.string(data, "device_name", required=False, max_len=64)
        key = name.lower()[:64]
        charges = [(self._per_address, address)]
        if not await self._holds_token(token, key):
            charges += [(self._per_pair, f"{key}\n{address}"), (self._per_username, key)]
        take_all(charges)
        try:
            user = await self._check_login(name, password)
        except ChatdError as exc:
            if exc.code != "unauthorized":  # only a wrong password counts as a failure
                self._give_back(charges)
            raise
        self._give_back(charges)
        token = new_token()
        now = now_ms()
        device = Device(
            device_id=new_id(),
            user_id=user.user_id,
            name=device_name or "device",
            created_at=now,
            expires_at=now + self._token_ttl_ms,
        )
        await self._storage.devices.create(device, token_hash(token))
        return token, device

    async def _check_login(self, name: str, password: str) -> User:
        if self._dummy_hash is None:
            raise ChatdError("unavailable", "the server is starting; retry")
        user = await self._storage.users.get_by_name(name) if len(name) <= 64 else None
        if user is None:
            await self._verify(self._dummy_hash, password)  # same cost as a real try
            raise ChatdError("unauthorized", "wrong username or password")
        if not await self._verify(user.password_hash, password):
            raise ChatdError("unauthorized", "wrong username or password")
        if user.banned:
            raise ChatdError("forbidden", "this account is banned")
        return user

    async def _holds_token(self, token: str | None, username: str) -> bool:
        """Whether ``token`` is a valid token of the user named ``username``."""
        if not token:
            return False
        try:
            caller = await self.authenticate(token)
        except ChatdError:
            return False
        return caller.username == username

    @staticmethod
    def _give_back(charges: list[tuple[TokenBucket, str]]) -> None:
        for bucket, key in charges:
            bucket.give_back(key)

    async def _hash(self, password: str) -> str:
        async with self._hash_gate.turn():
            return await self._hasher.hash(password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._hash_gate.turn():
            return await self._hasher.verify(password_hash, password)

    async def authenticate(self, token: str | None) -> Caller:
        """The caller a bearer token stands for, or ``unauthorized``/``forbidden``."""
        if not token:
            raise ChatdError("unauthorized", "a bearer token is required")
        device = await self._storage.devices.by_token(token_hash(token))
        if device is None or device.revoked_at is not None or device.expires_at <= now_ms():
            raise ChatdError("unauthorized", "the token is invalid, expired or revoked")
        user = await self._storage.users.get(device.user_id)
        if user is None:
            raise ChatdError("unauthorized", "the token is invalid, expired or revoked")
        if user.banned:
            raise ChatdError("forbidden", "this account is banned")
        return Caller(user.user_id, device.device_id, user.username, user.is_admin)

    async def logout(self, caller: Caller) -> None:
        await self.revoke_device(caller, caller.device_id)

    # -- devices ------------------------------------------------------------

    async def devices(self, caller: Caller) -> list[Device]:
        return await self._storage.devices.list_for_user(caller.user_id)

    async def revoke_device(self, caller: Caller, device_id: str) -> None:
        mine = {d.device_id for d in await self._storage.devices.list_for_user(caller.user_id)}
        if device_id not in mine:
            raise not_found("device not found")
        await self._storage.devices.revoke(device_id)
        await self.revoked(caller.user_id, [device_id], "token revoked")

    async def revoked(self, user_id: str, device_ids: list[str], reason: str) -> None:
        """After ``device_ids`` were revoked in storage: close their sockets on every
        node and drop what hangs off them (``on_revoked``: push targets)."""
        if not device_ids:
            return
        self._fanout.invalidate(Invalidation.devices(device_ids, reason))
        if self.on_revoked is not None:
            await self.on_revoked(user_id, device_ids)

    # -- profiles -----------------------------------------------------------

    async def get_user(self, user_id: str) -> User:
        user = await self._storage.users.get(user_id)
        if user is None:
            raise not_found("user not found")
        return user

    async def update_me(self, caller: Caller, data: Any) -> User:
        data = validate.body(data)
        fields: dict[str, object] = {}
        allowed = {"display_name": 64, "status_message": 140, "avatar_media_id": 64}
        unknown = set(data) - set(allowed) - {"group_add"}
        if unknown:
            raise bad_request(f"unknown field: {sorted(unknown)[0]}")
        if "group_add" in data:
            if data["group_add"] not in GROUP_ADD:
                raise bad_request('group_add must be "everyone" or "contacts"')
            fields["group_add"] = data["group_add"]
        for name, max_len in allowed.items():
            if name in data:
                value = validate.string(
                    data,
                    name,
                    allow_none=name != "display_name",
                    min_len=1 if name == "display_name" else 0,
                    max_len=max_len,
                )
                fields[name] = value
        if "status_message" in fields and fields["status_message"] is None:
            fields["status_message"] = ""  # null clears it, like an empty string
        if fields.get("avatar_media_id"):
            raise not_found("avatar_media_id: unknown media")
        if fields.get("avatar_media_id") == "":
            fields["avatar_media_id"] = None
        user = await self._storage.users.update(caller.user_id, **fields)
        if user is None:
            raise not_found("user not found")
        return user

    async def search(self, params: Mapping[str, str]) -> list[User]:
        prefix = params.get("q", "")
        if len(prefix) > 32:
            raise bad_request("q must be at most 32 characters")
        limit = validate.query_int(params, "limit", 20, minimum=1, maximum=100)
        return await self._storage.users.search(prefix, limit)

    # -- administration (``chatd.core.services.admin``) ----------------------

    async def hash_password(self, password: str) -> str:
        """The hash of a new password set by an administrator (length checked)."""
        self._check_password(password)
        return await self._hash(password)

    async def watch_revocations(self, interval: float = 1.0) -> None:
        """Close sockets of devices revoked anywhere (another node, the CLI)."""
        cursor = -1
        while True:
            with contextlib.suppress(ChatdError):
                revoked, cursor = await self._storage.devices.revocations_since(cursor)
                if revoked:
                    self._fanout.invalidate(Invalidation.devices(revoked, "token revoked"))
            await asyncio.sleep(interval)

    # -- helpers ------------------------------------------------------------

    def _password(self, data: Mapping[str, Any]) -> str:
        password = data.get("password")
        if not isinstance(password, str):
            raise bad_request("password is required")
        self._check_password(password)
        return password

    def _check_password(self, password: str) -> None:
        if not self._min_password <= len(password) <= MAX_PASSWORD:
            raise bad_request(f"password must be {self._min_password} to {MAX_PASSWORD} characters")
