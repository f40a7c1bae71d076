"""Helpers shared by the gRPC, concurrency and CLI tests.

- :func:`future_lease` builds a valid v0 Lease for a slot in the future.
- :func:`status_details` decodes a failed call's code, ErrorInfo and BadRequest.
- :class:`ServeProcess` runs ``leasebroker serve`` in a subprocess and finds its port.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from leasebroker.api.v0 import booking_service_pb2 as pb

NS_PER_S = 1_000_000_000
# One fixed slot start for every test: tomorrow, on the hour (whole seconds, whole ms).
START_S = (int(time.time()) // 3600 + 24) * 3600
START_NS = START_S * NS_PER_S
DURATION_S = 1800

# What the console script runs, without needing it on PATH.
CLI = [sys.executable, "-m", "leasebroker"]
# The BookingService's line, not the admin service's ("admin listening on ...").
LISTENING_RE = re.compile(r"(?<!admin )listening on (?P<host>\S+):(?P<port>\d+)")
STARTUP_TIMEOUT_S = 30.0


def future_lease(
    *,
    start_ns: int | None = START_NS,
    duration_s: int | None = DURATION_S,
    expires_ns: int | None = None,
    staff_id: str = "",
    room_id: str = "",
    **fields: Any,
) -> pb.Lease:
    """A valid CreateLease lease on the default slot; keyword arguments override any part.

    ``start_ns=None`` / ``duration_s=None`` leave that field unset; ``fields`` are
    plain Lease fields (merchant_id, service_id, client_reference, availability_tag,
    lease_id).
    """
    values = {"merchant_id": "merchant-1", "service_id": "haircut", "client_reference": "ref-1"}
    lease = pb.Lease(**{**values, **fields})
    if start_ns is not None:
        lease.start_time.FromNanoseconds(start_ns)
    if duration_s is not None:
        lease.duration.FromSeconds(duration_s)
    if expires_ns is not None:
        lease.lease_expiration_time.FromNanoseconds(expires_ns)
    if staff_id or room_id:
        lease.resources.staff_id, lease.resources.room_id = staff_id, room_id
    return lease


def create_request(lease: pb.Lease | None = None, **overrides: Any) -> pb.CreateLeaseRequest:
    """A CreateLeaseRequest for ``lease`` (default: ``future_lease(**overrides)``)."""
    return pb.CreateLeaseRequest(lease=lease if lease is not None else future_lease(**overrides))


@dataclass
class StatusDetails:
    """What a failed call said: its code, message, ErrorInfo and BadRequest violations."""

    code: grpc.StatusCode
    message: str
    domain: str = ""
    reason: str = ""
    violations: dict[str, str] = field(default_factory=dict)


def status_details(err: grpc.RpcError) -> StatusDetails:
    """Decode a failed call with ``grpc_status.rpc_status.from_call``."""
    result = StatusDetails(code=err.code(), message=err.details() or "")
    status = rpc_status.from_call(err)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            result.domain, result.reason = info.domain, info.reason
        elif detail.Unpack(bad):
            result.violations.update({v.field: v.description for v in bad.field_violations})
    return result


def call_status(call: Any, request: Any, **kwargs: Any) -> StatusDetails | None:
    """Make the call; None when it succeeds, else the decoded failure."""
    try:
        call(request, **kwargs)
    except grpc.RpcError as err:
        return status_details(err)
    return None


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any LEASEBROKER_* variable, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEBROKER_")}
    return {**env, **overrides}


class ServeProcess:
    """``leasebroker serve`` in a subprocess; use as a context manager (always killed).

    stderr is drained line by line by a thread into :attr:`lines`, so the pipe never
    fills; :meth:`wait_for` finds a line with a deadline.
    """

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        serve = ["serve", "--host", "127.0.0.1", "--port", "0", "--admin-port", "0"]
        self.args = [*CLI, *serve, *args]
        self.env = clean_env() if env is None else env
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> ServeProcess:
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = STARTUP_TIMEOUT_S) -> re.Match:
        """The first new stderr line matching ``pattern``; AssertionError at EOF or deadline."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise AssertionError(f"no {pattern.pattern!r} in time: {self.lines}") from None
            if line is None:
                raise AssertionError(f"serve ended before {pattern.pattern!r}: {self.lines}")
            self.lines.append(line)
            match = pattern.search(line)
            if match:
                return match

    def wait_listening(self) -> int:
        """Wait until the server says where it listens; sets and returns :attr:`port`."""
        self.port = int(self.wait_for(LISTENING_RE)["port"])
        return self.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and return the exit code.

        No waiting first: serve installs its handlers before it logs "listening on",
        so a signal right after that line must already stop it cleanly.
        """
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=30)


def run_cli(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``leasebroker ARGS`` to completion in a subprocess (killed on timeout)."""
    return subprocess.run(
        [*CLI, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=clean_env() if env is None else env,
        timeout=60,
    )
