"""Start throwaway redis-server processes on free loopback ports, for tests that need a
server configured their own way (a cluster, a tiny maxmemory, ACL users, one to freeze),
and stop them by PID. The shared Redis at 127.0.0.1:6379 is never changed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis


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


def free_port_pairs(count: int) -> list[int]:
    """``count`` ports for cluster nodes that start only after all are picked: each a
    :func:`free_port_pair`, and no node's port or bus port the port or bus port of
    another (p + 10000 may be the next pick's p, since nothing holds it yet)."""
    ports: list[int] = []
    taken: set[int] = set()
    while len(ports) < count:
        port = free_port_pair()
        if {port, port + 10000} & taken:
            continue
        ports.append(port)
        taken |= {port, port + 10000}
    return ports


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


# The servers this module started, by port, so that each is stopped by its PID.
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def start(folder: Path, *settings: str, port: int | None = None) -> int:
    """Start a redis-server with ``settings`` (in the foreground, so its PID is known);
    returns its port (``port``, or a free one) once it answers."""
    server, _ = binaries()
    port = port or free_port_pair()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(folder), *settings]  # fmt: skip
    return _launch(argv, folder / f"{port}.log", port, f"redis-server on port {port}")


def _launch(argv: list[str], log_path: Path, port: int, what: str, *ping_options: str) -> int:
    """Run ``argv`` in the foreground (its PID kept for :func:`stop`), logging to
    ``log_path``; returns ``port`` once it answers PING there."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    _STARTED[port] = process
    try:
        wait_for(lambda: ping(port, *ping_options), what)
    except TimeoutError:
        stop(port)
        raise
    return port


def ping(port: int, *options: str) -> bool:
    """Whether the server on ``port`` answers PING (``options``: more redis-cli flags,
    e.g. for TLS)."""
    _, cli = binaries()
    command = [cli, "-p", str(port), *options, "ping"]
    result = subprocess.run(command, capture_output=True, text=True)
    return result.returncode == 0 and "PONG" in result.stdout


def start_sentinel(folder: Path, primary_port: int, service: str = "mymaster") -> int:
    """Start a redis-server in Sentinel mode watching the primary on ``primary_port``
    (quorum 1, a primary counts as down after 1 s); returns its port."""
    server, _ = binaries()
    port = free_port_pair()
    config = folder / f"sentinel-{port}.conf"  # Sentinel rewrites its file: its own one
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
        f"sentinel monitor {service} 127.0.0.1 {primary_port} 1\n"
        f"sentinel down-after-milliseconds {service} 1000\n"
        f"sentinel failover-timeout {service} 10000\n"
        f"sentinel parallel-syncs {service} 1\n"
    )
    argv = [server, str(config), "--sentinel"]
    return _launch(argv, folder / f"sentinel-{port}.log", port, f"redis-sentinel on port {port}")


def start_tls(folder: Path, certs: Path, *settings: str) -> int:
    """Start a redis-server that speaks only TLS (``tls-port``, no plain port) with
    ``certs``/server.pem, server.key and ca.pem, asking clients for a certificate
    that chains to ca.pem; returns its TLS port."""
    server, _ = binaries()
    port = free_port_pair()
    argv = [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(folder),
            "--tls-cert-file", str(certs / "server.pem"),
            "--tls-key-file", str(certs / "server.key"),
            "--tls-ca-cert-file", str(certs / "ca.pem"), "--tls-auth-clients", "yes",
            *settings]  # fmt: skip
    tls = ["--tls", "--cacert", str(certs / "ca.pem"), "--cert", str(certs / "client.pem"),
           "--key", str(certs / "client.key")]  # fmt: skip
    return _launch(argv, folder / f"tls-{port}.log", port, f"TLS redis-server on port {port}", *tls)


def stop(port: int) -> None:
    """Stop the server on ``port``: by its PID when this module started it (a frozen one
    too), else with SHUTDOWN NOSAVE."""
    process = _STARTED.pop(port, None)
    if process is None:
        _, cli = binaries()
        subprocess.run([cli, "-p", str(port), "shutdown", "nosave"], capture_output=True)
        return
    process.send_signal(signal.SIGCONT)  # a frozen (SIGSTOP) server must be able to die
    process.kill()
    process.wait(timeout=10)


@dataclass
class OwnRedis:
    """A server of a test's own: its process (for signals) and port."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, protocol=2, **options)


@contextmanager
def own_redis(folder: Path, *settings: str) -> Iterator[OwnRedis]:
    """A redis-server no other test touches (one to freeze, one with ACL users of its
    own), stopped by its PID when the block ends."""
    port = start(folder, *settings)
    try:
        yield OwnRedis(_STARTED[port], port)
    finally:
        stop(port)
