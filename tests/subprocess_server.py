"""Run ``chatd serve`` as a real child process (for crash and signal tests).

It is configured as the in-process test server is (``tests.conftest.base_config``),
so ``overrides`` can put it on the session's ScyllaDB keyspace too.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import base_config
from tests.toml_writer import write_toml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        overrides: dict[str, Any] | None = None,
        port: int | None = None,
        *,
        descriptors: int | None = None,
    ) -> None:
        """``descriptors``: the child's RLIMIT_NOFILE (soft and hard), to test its limits."""
        self.descriptors = descriptors
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = write_toml(
            data_dir.parent / f"chatd-{self.port}.toml", base_config(data_dir, overrides)
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115
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
            preexec_fn=self._limit if self.descriptors else None,
        )
        deadline = asyncio.get_running_loop().time() + 60  # ScyllaDB: connect, check schema
        async with aiohttp.ClientSession() as http:
            while asyncio.get_running_loop().time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"chatd exited with {self.proc.returncode}: {self.log_path.read_text()}"
                    )
                try:
                    async with http.get(self.url + "/api/v1/health") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"chatd did not become healthy: {self.log_path.read_text()}")

    def _limit(self) -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.descriptors, self.descriptors))

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
