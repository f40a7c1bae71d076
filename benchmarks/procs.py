"""Child processes of a benchmark run (a private redis-server, `leasebroker serve`, the
no-op server), their CPU time, and cleaning up a key prefix."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The BookingService's line, not "admin listening on ..." nor serve's earlier "bound ...".
LISTENING = re.compile(r"(?<!admin )\blistening on (\S+):(\d+)\b")
REDIS_READY = re.compile(r"Ready to accept connections")
# serve --processes N: the processes it started, and once every one of them listens.
STARTED = re.compile(r"started \d+ serve processes sharing .*: pids (\d+(?:, \d+)*)")
ALL_LISTENING = re.compile(r"all \d+ serve processes are (listening on) (?:\S+):(\d+)\b")


@dataclass(eq=False)
class Proc:
    """A child process whose stderr and stdout go to a file (never a pipe that can fill)."""

    popen: subprocess.Popen
    log_path: Path
    port: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """Its CPU time, and its serve processes' (serve --processes N) too."""
        return sum(cpu_seconds(pid) for pid in [self.pid, *self.extra.get("children", [])])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log_path.unlink(missing_ok=True)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_logged(cmd: list[str], ready: re.Pattern, timeout_s: float = 60.0) -> Proc:
    """Start ``cmd`` and wait until its output matches ``ready``; the port is group 2
    of the match when there is one."""
    handle, name = tempfile.mkstemp(prefix="lbbench-", suffix=".log")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    popen = subprocess.Popen(
        cmd, stdout=handle, stderr=handle, stdin=subprocess.DEVNULL, cwd=ROOT, env=env
    )
    os.close(handle)
    proc = Proc(popen, Path(name))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = ready.search(proc.log())
        if match:
            if match.groups():
                proc.port = int(match.group(2))
            return proc
        if popen.poll() is not None:
            break
        time.sleep(0.05)
    output = proc.log()[-2000:]
    proc.stop()
    raise RuntimeError(f"{' '.join(cmd[:4])} did not start:\n{output}")


def start_serve(
    redis_url: str, prefix: str, workers: int, extra: list[str] = (), processes: int = 1
) -> Proc:
    """`leasebroker serve` on a free loopback port, without the admin service, in
    ``processes`` processes (ready once every one of them listens)."""
    cmd = [sys.executable, "-m", "leasebroker", "serve", "--redis-url", redis_url]
    cmd += ["--key-prefix", prefix, "--host", "127.0.0.1", "--port", "0", "--admin-port", "-1"]
    cmd += ["--workers", str(workers), "--processes", str(processes), *extra]
    proc = start_logged(cmd, LISTENING if processes == 1 else ALL_LISTENING)
    started = STARTED.search(proc.log())
    if started:
        proc.extra["children"] = [int(pid) for pid in started.group(1).split(", ")]
    return proc


def start_noop(workers: int, event_loop: str = "auto", await_redis: str | None = None) -> Proc:
    """benchmarks/noop_server.py; its CreateLease awaits a PING on ``await_redis`` first
    when given."""
    script = str(Path(__file__).with_name("noop_server.py"))
    cmd = [sys.executable, script, "--port", "0", "--workers", str(workers)]
    cmd += ["--event-loop", event_loop]
    if await_redis:
        cmd += ["--await-redis", await_redis]
    return start_logged(cmd, LISTENING)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_private_redis() -> tuple[Proc, str]:
    """A throwaway redis-server on loopback (no persistence, noeviction): numbers that
    no other client of a shared Redis can disturb."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install it or pass --redis-url")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="lbbench-redis-")
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    cmd += ["no", "--maxmemory-policy", "noeviction", "--dir", workdir]
    proc = start_logged(cmd, REDIS_READY, timeout_s=20)
    proc.port = port
    proc.extra["workdir"] = workdir
    return proc, f"redis://127.0.0.1:{port}/0"


def unique_prefix(what: str) -> str:
    return f"lbbench-{what}-{uuid.uuid4().hex[:8]}"


def delete_prefix(client: Any, prefix: str) -> int:
    """UNLINK every key under ``prefix:`` (SCAN, never KEYS or FLUSH*)."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=2000):
        batch.append(key)
        if len(batch) >= 2000:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted
