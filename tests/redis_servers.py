"""Start throwaway redis-server processes on free loopback ports, for tests that need a
server configured their own way (a cluster, a tiny maxmemory)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def binaries() -> tuple[str, str]:
    """Paths of redis-server and redis-cli; skip (fail under CI) when missing."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        if os.environ.get("CI"):
            pytest.fail("CI must run this test: redis-server/redis-cli not installed")
        pytest.skip("redis-server is not installed")
    return server, cli


def free_port_pair() -> int:
    """A port p with p and its cluster bus port p + 10000 both free on loopback."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def start(folder: Path, *settings: str) -> int:
    """Start a daemonized redis-server with ``settings``; returns its port once it answers."""
    server, _ = binaries()
    port = free_port_pair()
    subprocess.run(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "yes", "--dir", str(folder), "--logfile", f"{folder}/{port}.log",
         *settings],
        check=True,
    )  # fmt: skip
    wait_for(lambda: ping(port), f"redis-server on port {port}")
    return port


def ping(port: int) -> bool:
    _, cli = binaries()
    return subprocess.run([cli, "-p", str(port), "ping"], capture_output=True).returncode == 0


def stop(port: int) -> None:
    _, cli = binaries()
    subprocess.run([cli, "-p", str(port), "shutdown", "nosave"], capture_output=True)
