"""The saved admin profile: which server, and a token for it, in the user's config dir.

``$XDG_CONFIG_HOME/chatd/admin.toml`` (platformdirs' user config dir elsewhere),
written owner-only (0600) because the token is as good as the password. The file
holds the last server used and one token per server URL::

    url = "http://127.0.0.1:8080"

    [servers."http://127.0.0.1:8080"]
    token = "..."
    username = "root"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import orjson

FILE_NAME = "admin.toml"


def profile_path() -> Path:
    """Where the profile lives: XDG_CONFIG_HOME if set, else the platform's config dir."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg) / "chatd" / FILE_NAME
    import platformdirs

    return Path(platformdirs.user_config_dir("chatd")) / FILE_NAME


@dataclass(frozen=True)
class Saved:
    """A server's saved credentials."""

    url: str
    token: str
    username: str = ""


def _read(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"cannot read {path}: {exc}") from None


class ProfileError(Exception):
    """The profile file is unreadable or unwritable (the message says which and why)."""


def default_url(path: Path | None = None) -> str | None:
    """The server the profile last saved, if any."""
    url = _read(path or profile_path()).get("url")
    return url if isinstance(url, str) else None


def load(url: str, path: Path | None = None) -> Saved | None:
    """The saved token for ``url``, if there is one."""
    entry = _read(path or profile_path()).get("servers", {}).get(url.rstrip("/"))
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        return None
    return Saved(url.rstrip("/"), entry["token"], str(entry.get("username", "")))


def _quote(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML ones)."""
    return orjson.dumps(value).decode()


def save(saved: Saved, path: Path | None = None) -> Path:
    """Add or replace ``saved`` (and make it the default server); the file is 0600."""
    path = path or profile_path()
    data = _read(path)
    servers = {k: v for k, v in data.get("servers", {}).items() if isinstance(v, dict)}
    servers[saved.url] = {"token": saved.token, "username": saved.username}
    lines = [f"url = {_quote(saved.url)}", ""]
    for url, entry in servers.items():
        lines.append(f"[servers.{_quote(url)}]")
        lines.extend(f"{key} = {_quote(str(value))}" for key, value in entry.items())
        lines.append("")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 from the start, so the token is never readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        os.chmod(path, 0o600)  # an older file may have been looser
    except OSError as exc:
        raise ProfileError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
