"""Run ``chatd serve`` as a real child process (for crash and signal tests)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.conftest import FAST_AUTH, RELAXED_LIMITS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, data_dir: Path, port: int | None = None, extra: str = "") -> None:
        """``extra``: TOML tables appended to the configuration."""
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = data_dir.parent / f"chatd-{self.port}.toml"
        auth = "\n".join(f"{k} = {v}" for k, v in FAST_AUTH.items())
        limits = "\n".join(f"{k} = {v}" for k, v in RELAXED_LIMITS.items())
        self.config.write_text(
            f'[server]\ndata_dir = "{data_dir}"\n\n[auth]\n{auth}\n\n[limits]\n{limits}\n{extra}'
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chatd",
                "serve",
                "--config",
                str(self.config),
                "--port",
                str(self.port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"chatd exited with {self.proc.returncode}")
                try:
                    async with http.get(self.url + "/api/v1/health") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("chatd did not become healthy")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 15) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
