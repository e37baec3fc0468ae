"""Server administration: the one service behind the admin API and the CLI.

Every change is recorded twice: a line on the ``chatd.audit`` logger and an
``AuditEntry`` in storage (``GET /admin/audit``), both naming the actor (an
admin's user id, or ``"cli"`` for the command line on the data directory).

Lists are keyset-paginated with opaque cursors (``chatd.core.cursors``): users
by username, groups by group id, the audit log by ``(time, entry_id)``; a row
added while an admin pages is never shown twice and never makes another one
skipped. Who may call this (admins only) is checked at the edge, once, before
any of it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chatd.core import cursors, validate
from chatd.core.errors import ChatdError, bad_request, not_found
from chatd.core.ids import format_ts, id_time_ms, new_id, new_token, now_ms
from chatd.core.models import AuditEntry, MediaUsage, Totals, User
from chatd.core.ports.presence import Presence
from chatd.core.ports.storage import Storage
from chatd.core.services.accounts import AccountService
from chatd.core.services.groups import GroupService
from chatd.core.services.push import PushService

audit_log = logging.getLogger("chatd.audit")

CLI = "cli"
DEFAULT_PAGE = 50
MAX_PAGE = 500
#: Groups a filtered (``q``) page may read before it answers with what it found.
GROUP_SCAN = 2000
DEFAULT_INVITE_S = 7 * 86_400
MAX_INVITE_S = 366 * 86_400
MAX_INVITE_USES = 1_000_000
#: How long counts read from storage stay fresh (a ScyllaDB count is a scan).
TOTALS_TTL_S = 30.0


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def page_limit(params: Mapping[str, str]) -> int:
    return validate.query_int(params, "limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)


def prefix_param(params: Mapping[str, str]) -> str:
    q = params.get("q", "")
    if len(q) > 64:
        raise bad_request("q must be at most 64 characters")
    return q


class CachedCounts:
    """Storage counts at most ``ttl`` seconds old; one refresh at a time."""

    def __init__(self, storage: Storage, ttl: float = TOTALS_TTL_S) -> None:
        self._storage = storage
        self._ttl = ttl
        self._totals: tuple[float, Totals] | None = None
        self._media: tuple[float, MediaUsage] | None = None
        self._lock = asyncio.Lock()

    async def totals(self) -> Totals:
        async with self._lock:
            if self._totals is None or time.monotonic() - self._totals[0] > self._ttl:
                self._totals = (time.monotonic(), await self._storage.stats.totals())
            return self._totals[1]

    async def media(self) -> MediaUsage:
        async with self._lock:
            if self._media is None or time.monotonic() - self._media[0] > self._ttl:
                self._media = (time.monotonic(), await self._storage.stats.media_usage())
            return self._media[1]

    def forget(self) -> None:
        self._totals = self._media = None


class AdminService:
    def __init__(
        self,
        storage: Storage,
        accounts: AccountService,
        groups: GroupService,
        presence: Presence,
        push: PushService,
        push_depth: Callable[[], int],
    ) -> None:
        self._storage = storage
        self._push = push
        #: Notifications waiting, as last counted by the push worker (no scan per call).
        self.push_depth = push_depth
        self._accounts = accounts
        self._groups = groups
        self._presence = presence
        self.counts = CachedCounts(storage)

    # -- users ----------------------------------------------------------------

    async def users(self, params: Mapping[str, str]) -> Page:
        """``GET /admin/users``: username order, ``q`` a username prefix."""
        limit = page_limit(params)
        after = cursors.decode("u", params.get("cursor")) or ""
        found = await self._storage.users.search(prefix_param(params), limit + 1, after)
        shown = found[:limit]
        counts = await asyncio.gather(*(self._device_count(u.user_id) for u in shown))
        items = [self._user_view(u, n) for u, n in zip(shown, counts, strict=True)]
        more = len(found) > limit
        return Page(items, cursors.encode("u", shown[-1].username) if more else None)

    async def user(self, user_id: str) -> dict[str, Any]:
        """``GET /admin/users/{id}``: the user with each live device."""
        user = await self._user(user_id)
        devices = await self._storage.devices.list_for_user(user_id)
        now = now_ms()
        views = []
        for d in devices:
            online = self._presence.device_online(d.device_id)
            views.append(
                {
                    "device_id": d.device_id,
                    "device_name": d.name,
                    "created_at": format_ts(d.created_at),
                    "last_seen": format_ts(now) if online else None,
                    "online": online,
                }
            )
        return {**self._user_view(user, len(devices)), "devices": views}

    async def user_by_name(self, username: str) -> User:
        user = await self._storage.users.get_by_name(username)
        if user is None:
            raise not_found(f"no user named {username}")
        return user

    async def all_users(self) -> list[User]:
        """Every user in username order, read a page at a time (the CLI's list)."""
        users: list[User] = []
        while page := await self._storage.users.list_all(
            MAX_PAGE, users[-1].username if users else ""
        ):
            users.extend(page)
        return users

    async def create_user(
        self,
        actor: str,
        username: str,
        password: str,
        *,
        display_name: str | None = None,
        is_admin: bool = False,
    ) -> User:
        user = await self._accounts.create_user(
            username, password, display_name=display_name, is_admin=is_admin
        )
        await self._audit(actor, "user.create", user.user_id, f"username={user.username}")
        if is_admin:
            await self._audit(actor, "user.admin", user.user_id, "is_admin=true")
        return user

    async def ban(self, actor: str, user_id: str) -> User:
        """Refuse the user's logins and revoke every token at once; the router
        closes the user's sockets on every node."""
        if actor == user_id:
            raise bad_request("an admin cannot ban themself")
        await self._user(user_id)
        user = await self._storage.users.update(user_id, banned=True)
        assert user is not None
        revoked = await self._storage.devices.revoke_all(user_id)
        await self._accounts.revoked(user_id, revoked, "account banned")
        await self._audit(actor, "user.ban", user_id, f"tokens_revoked={len(revoked)}")
        return user

    async def unban(self, actor: str, user_id: str) -> User:
        await self._user(user_id)
        user = await self._storage.users.update(user_id, banned=False)
        assert user is not None
        await self._audit(actor, "user.unban", user_id)
        return user

    async def set_password(self, actor: str, user_id: str, data: Any) -> None:
        """A new password; every token of the user is revoked (logged out everywhere)."""
        data = validate.body(data)
        password = data.get("password")
        if not isinstance(password, str):
            raise bad_request("password is required")
        await self.reset_password(actor, user_id, password)

    async def reset_password(self, actor: str, user_id: str, password: str) -> None:
        await self._user(user_id)
        password_hash = await self._accounts.hash_password(password)
        await self._storage.users.update(user_id, password_hash=password_hash)
        revoked = await self._storage.devices.revoke_all(user_id)
        await self._accounts.revoked(user_id, revoked, "password changed")
        await self._audit(actor, "user.password", user_id, f"tokens_revoked={len(revoked)}")

    async def update_user(self, actor: str, user_id: str, data: Any) -> dict[str, Any]:
        """``PATCH /admin/users/{id}`` ``{is_admin}``."""
        data = validate.body(data)
        unknown = set(data) - {"is_admin"}
        if unknown:
            raise bad_request(f"unknown field: {sorted(unknown)[0]}")
        is_admin = validate.boolean(data, "is_admin")
        await self.set_admin(actor, user_id, is_admin)
        return await self.user(user_id)

    async def set_admin(self, actor: str, user_id: str, is_admin: bool) -> User:
        if actor == user_id and not is_admin:
            raise bad_request("an admin cannot remove their own admin role")
        await self._user(user_id)
        user = await self._storage.users.update(user_id, is_admin=is_admin)
        assert user is not None
        await self._audit(actor, "user.admin", user_id, f"is_admin={str(is_admin).lower()}")
        return user

    async def revoke_device(self, actor: str, user_id: str, device_id: str) -> None:
        await self._user(user_id)
        mine = {d.device_id for d in await self._storage.devices.list_for_user(user_id)}
        if device_id not in mine:
            raise not_found("device not found")
        await self._storage.devices.revoke(device_id)
        await self._accounts.revoked(user_id, [device_id], "token revoked")
        await self._audit(actor, "device.revoke", device_id, f"user_id={user_id}")

    # -- invites --------------------------------------------------------------

    async def create_invite(self, actor: str, data: Any) -> dict[str, Any]:
        """``POST /admin/invites`` ``{uses?, expires_in_s?}`` (default 1 use, 7 days)."""
        data = validate.body({} if data is None else data)
        uses = (
            validate.integer(data, "uses", minimum=1, maximum=MAX_INVITE_USES)
            if (data.get("uses") is not None)
            else 1
        )
        ttl = DEFAULT_INVITE_S
        if data.get("expires_in_s") is not None:
            ttl = validate.integer(data, "expires_in_s", minimum=60, maximum=MAX_INVITE_S)
        return await self.invite(actor, uses, ttl)

    async def invite(self, actor: str, uses: int, expires_in_s: int) -> dict[str, Any]:
        code = new_token()[:22]
        expires_at = now_ms() + expires_in_s * 1000
        await self._storage.invites.create(code, uses, expires_at)
        # The audit names the invite by a prefix only: the log must not hand out codes.
        await self._audit(actor, "invite.create", code[:6], f"uses={uses}")
        return {"code": code, "uses": uses, "expires_at": format_ts(expires_at)}

    # -- groups -----------------------------------------------------------------

    async def groups(self, params: Mapping[str, str]) -> Page:
        """``GET /admin/groups``: group id (creation) order, ``q`` a name prefix.

        Without ``q`` a page reads ``limit + 1`` ids from the group index. With
        ``q`` it reads at most ``GROUP_SCAN`` groups and filters their names; a
        page may then hold fewer than ``limit`` groups while ``next_cursor`` is
        not null (the scan goes on from there): bounded work per request on
        every backend, with no index on names to keep.
        """
        limit = page_limit(params)
        prefix = prefix_param(params).lower()
        after = cursors.decode("g", params.get("cursor")) or ""
        budget = limit + 1 if not prefix else max(GROUP_SCAN, limit + 1)
        found: list[dict[str, Any]] = []
        scanned_to, exhausted = after, False
        while len(found) <= limit and not exhausted:
            want = min(MAX_PAGE, budget)
            ids = await self._storage.chats.group_ids(want, scanned_to)
            exhausted = len(ids) < want
            for group_id in ids:
                scanned_to = group_id
                budget -= 1
                chat = await self._storage.chats.get(group_id)
                if chat is None or not (chat.title or "").lower().startswith(prefix):
                    continue
                found.append(await self._group_row(chat))
                if len(found) > limit:
                    break
            if budget <= 0:
                break
        if len(found) > limit:
            return Page(found[:limit], cursors.encode("g", found[limit - 1]["group_id"]))
        return Page(found, None if exhausted else cursors.encode("g", scanned_to))

    async def group(self, group_id: str) -> dict[str, Any]:
        return await self._groups.describe(group_id)

    async def all_groups(self) -> list[dict[str, Any]]:
        """Every group with its members (the CLI's list)."""
        ids: list[str] = []
        while page := await self._storage.chats.group_ids(MAX_PAGE, ids[-1] if ids else ""):
            ids.extend(page)
        return [await self._groups.describe(group_id) for group_id in ids]

    async def _group_row(self, chat: Any) -> dict[str, Any]:
        members = await self._storage.chats.members(chat.chat_id)
        return {
            "group_id": chat.chat_id,
            "name": chat.title,
            "members_count": len(members),
            "created_at": format_ts(chat.created_at),
            "last_seq": chat.last_seq,
        }

    # -- media, counts, audit -------------------------------------------------

    async def media(self) -> dict[str, int]:
        usage = await self.counts.media()
        return {
            "files": usage.files,
            "bytes": usage.bytes,
            "unreferenced_files": usage.unreferenced_files,
        }

    async def audit(self, params: Mapping[str, str]) -> Page:
        """``GET /admin/audit``: newest first."""
        limit = page_limit(params)
        before = _audit_key(cursors.decode("a", params.get("cursor")))
        entries = await self._storage.audit.page(limit + 1, before)
        shown = entries[:limit]
        items = [
            {
                "time": format_ts(e.time),
                "actor_id": e.actor_id,
                "action": e.action,
                "target_id": e.target_id,
                "detail": e.detail,
            }
            for e in shown
        ]
        more = len(entries) > limit
        last = shown[-1] if shown else None
        cursor = cursors.encode("a", f"{last.time}:{last.entry_id}") if more and last else None
        return Page(items, cursor)

    # -- push outbox ------------------------------------------------------------

    async def push(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /admin/push``: the outbox depth and its dead notifications, by id.

        ``provider`` is that of the device's current target (null if it has none
        any more); ``created_at`` is when this notification was made, read from its
        time-sortable id. No payload is shown."""
        limit = page_limit(params)
        after = cursors.decode("p", params.get("cursor")) or ""
        dead, following = await self._storage.push.dead(limit, after)
        targets = await asyncio.gather(
            *(self._storage.push.get_target(d.item.device_id) for d in dead)
        )
        items = [
            {
                "id": d.item.delivery_id,
                "provider": t.target.provider if t is not None else None,
                "device_id": d.item.device_id,
                "user_id": d.item.user_id,
                "chat_id": d.item.chat_id,
                "attempts": d.item.attempts,
                "last_error": d.item.last_error,
                "created_at": format_ts(id_time_ms(d.item.delivery_id)),
                "dead_at": format_ts(d.dead_at),
            }
            for d, t in zip(dead, targets, strict=True)
        ]
        return {
            "outbox_depth": self.push_depth(),
            "dead": items,
            "next_cursor": cursors.encode("p", following) if following else None,
        }

    async def retry_push(self, actor: str, delivery_id: str) -> None:
        """Send a dead notification again, with the same ``delivery_id``."""
        outcome = await self._push.retry_dead_notification(delivery_id)
        await self._audit(actor, "push.retry", delivery_id, outcome)

    async def _audit(self, actor: str, action: str, target_id: str, detail: str = "") -> None:
        """Log the change, then keep it; a change whose record cannot be stored
        is still logged (the audit line is written first)."""
        audit_log.info(
            "actor=%s action=%s target=%s%s", actor, action, target_id, f" {detail}" * bool(detail)
        )
        entry = AuditEntry(new_id(), now_ms(), actor, action, target_id, detail)
        await self._storage.audit.append(entry)

    # -- helpers ----------------------------------------------------------------

    async def _user(self, user_id: str) -> User:
        user = await self._storage.users.get(user_id)
        if user is None:
            raise not_found("user not found")
        return user

    async def _device_count(self, user_id: str) -> int:
        return len(await self._storage.devices.list_for_user(user_id))

    @staticmethod
    def _user_view(user: User, devices: int) -> dict[str, Any]:
        return {
            "user_id": user.user_id,
            "username": user.username,
            "display_name": user.display_name,
            "is_admin": user.is_admin,
            "banned": user.banned,
            "created_at": format_ts(user.created_at),
            "last_seen": format_ts(user.last_seen),
            "devices": devices,
        }


def _audit_key(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    at, _, entry_id = raw.partition(":")
    if not (at.isascii() and at.isdigit() and entry_id):
        raise ChatdError("bad_request", "cursor is not one this server gave")
    return int(at), entry_id
