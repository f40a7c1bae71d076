"""A redis-server of a test's own, on a free loopback port, stopped by its PID.

For tests that need a server no other test may touch: one to freeze (SIGSTOP), one
with ACL users of its own. The real shared Redis at 127.0.0.1:6379 is never changed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis


@dataclass
class OwnRedis:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, protocol=2, **options)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def own_redis(folder: Path, *settings: str) -> Iterator[OwnRedis]:
    """Start ``redis-server`` with ``settings``; yield it once it answers PING; kill it."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run this test: redis-server is not installed")
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(folder), *settings],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    own = OwnRedis(process, port)
    try:
        probe = own.client(socket_timeout=1)
        for _ in range(200):
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        probe.close()
        yield own
    finally:
        process.send_signal(signal.SIGCONT)  # a frozen server must be able to die
        process.kill()
        process.wait(timeout=10)
