"""``chatd admin``: find credentials, prove they are an admin's, then run the console.

Credentials, first found wins: ``CHATD_ADMIN_TOKEN``, the saved profile's token for
the URL, a username and password prompt. Every check happens before the screen
takes over the terminal, so a refusal is one line of text, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

from admin_tui import profile
from admin_tui.api import AdminApi, AdminError

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_ENV = "CHATD_ADMIN_TOKEN"
#: (prompt text, hide input) -> the answer
Ask = Callable[[str, bool], str]


@dataclass
class Credentials:
    url: str
    token: str
    username: str = ""
    source: str = "login"  # "environment", "profile" or "login"


async def sign_in(url: str, username: str, password: str) -> str:
    """Log in and prove the account is an admin; the token, or AdminError in words.

    A login that is not an admin's is logged out again, so no stray device remains.
    """
    api = AdminApi(url)
    try:
        await api.login(username, password)
        try:
            await api.check_admin()
        except AdminError:
            await api.logout()
            raise
        assert api.token is not None
        return api.token
    finally:
        await api.aclose()


async def verify(url: str, token: str) -> None:
    """AdminError unless ``token`` is an admin's on ``url``."""
    api = AdminApi(url, token)
    try:
        await api.check_admin()
    finally:
        await api.aclose()


async def log_out(url: str, token: str) -> None:
    api = AdminApi(url, token)
    try:
        await api.logout()
    except AdminError:
        pass  # already revoked (a ban, a password reset): nothing to undo
    finally:
        await api.aclose()


def resolve(
    url: str | None, username: str | None, ask: Ask, say: Callable[[str], None]
) -> Credentials:
    """The credentials to run with; AdminError when there are none that work."""
    url = (url or profile.default_url() or DEFAULT_URL).rstrip("/")
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        asyncio.run(verify(url, token))
        return Credentials(url, token, source="environment")
    saved = profile.load(url)
    if saved is not None and (username is None or username == saved.username):
        try:
            asyncio.run(verify(url, saved.token))
            return Credentials(url, saved.token, saved.username, source="profile")
        except AdminError as exc:
            if exc.code != "unauthorized":
                raise
            say(f"the saved token for {url} no longer works; log in again")
    username = username or ask("Username", False)
    password = ask("Password", True)
    token = asyncio.run(sign_in(url, username, password))
    return Credentials(url, token, username, source="login")


def main(
    url: str | None,
    username: str | None,
    save: bool,
    theme: str | None,
    ask: Ask,
    say: Callable[[str], None],
) -> None:
    """Run ``chatd admin``; AdminError or ProfileError for the caller to print."""
    creds = resolve(url, username, ask, say)
    if save:
        where = profile.save(profile.Saved(creds.url, creds.token, creds.username))
        say(f"token saved in {where}")
    from admin_tui.app import AdminApp

    AdminApp(AdminApi(creds.url, creds.token), theme=theme).run()
    if creds.source == "login" and not save:
        # This run's device is not needed again: revoke its token on the way out.
        asyncio.run(log_out(creds.url, creds.token))
