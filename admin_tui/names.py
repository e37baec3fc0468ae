"""User ids to usernames, for lists the server gives as ids (audit actors, group members).

Looked up through ``GET /admin/users/{id}`` once each and kept for the session; an
id that is not a user's (a removed user, ``cli`` for the command line) stays as is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from admin_tui.api import AdminApi, AdminError

#: at most this many lookups per list, so a huge group does not flood the server
MAX_LOOKUPS = 100


class Names:
    def __init__(self, api: AdminApi) -> None:
        self.api = api
        self.known: dict[str, str] = {}

    async def resolve(self, user_ids: Iterable[object]) -> dict[str, str]:
        """``{id: username}`` for ``user_ids`` (unknown ones map to themselves)."""
        wanted = {str(i) for i in user_ids if i}
        missing = sorted(wanted - self.known.keys())[:MAX_LOOKUPS]
        names = await asyncio.gather(*(self._lookup(i) for i in missing))
        self.known.update(zip(missing, names, strict=True))
        return {i: self.known.get(i, i) for i in wanted}

    async def _lookup(self, user_id: str) -> str:
        try:
            return str((await self.api.user(user_id)).get("username") or user_id)
        except AdminError:
            return user_id
