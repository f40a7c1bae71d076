"""Every Redis reply that means "not now" is UNAVAILABLE (safe to retry), never INTERNAL.

One classification function (leasebroker.core.redis_errors.is_unavailable) decides;
it is tested against each reply as redis-py parses it, and end to end through gRPC
against a stand-in server on loopback that answers every script with that reply.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import grpc
import pytest
import redis
import redis.exceptions
from redis._parsers.base import BaseParser
from support import START_NS, create_request, status_details

from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import LeaseRequest
from leasebroker.core.redis_errors import UNAVAILABLE_CODES, is_unavailable
from leasebroker.core.units import NS_PER_S
from leasebroker.wire.server import start_server

# Each "not now" reply as a real Redis 7 words it.
NOT_NOW_REPLIES = {
    "BUSY": "BUSY Redis is busy running a script. You can only call SCRIPT KILL or "
    "SHUTDOWN NOSAVE.",
    "LOADING": "LOADING Redis is loading the dataset in memory",
    "MISCONF": "MISCONF Redis is configured to save RDB snapshots, but it's currently "
    "unable to persist to disk.",
    "READONLY": "READONLY You can't write against a read only replica.",
    "NOREPLICAS": "NOREPLICAS Not enough good replicas to write.",
    "MASTERDOWN": "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is "
    "set to 'no'.",
    "CLUSTERDOWN": "CLUSTERDOWN The cluster is down",
    "TRYAGAIN": "TRYAGAIN Multiple keys request during rehashing of slot",
    "OOM": "OOM command not allowed when used memory > 'maxmemory'.",
}
# Replies that mean a bug (ours or the server's setup): INTERNAL.
BUG_REPLIES = [
    "ERR Error running script (call to f_0123): @user_script:1: Script attempted to "
    "access nonexistent global variable 'x'",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "NOPERM this user has no permissions to run the 'xadd' command",
    "ERR value is not an integer or out of range",
]


def parsed(reply: str) -> redis.exceptions.RedisError:
    """The exception redis-py raises for this error reply."""
    return BaseParser.parse_error(reply)


def test_every_code_has_a_reply_under_test():
    assert set(NOT_NOW_REPLIES) == UNAVAILABLE_CODES


@pytest.mark.parametrize("code", sorted(NOT_NOW_REPLIES))
def test_not_now_replies_are_unavailable(code):
    assert is_unavailable(parsed(NOT_NOW_REPLIES[code]))


@pytest.mark.parametrize("reply", BUG_REPLIES, ids=lambda r: r.split()[0])
def test_other_replies_are_not_unavailable(reply):
    assert not is_unavailable(parsed(reply))


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.ConnectionError("Error 111 connecting"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.MaxConnectionsError("Too many connections"),
        redis.exceptions.SlotNotCoveredError("slot not covered"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_broken_connections_are_unavailable(exc):
    assert is_unavailable(exc)


class AnsweringServer:
    """A stand-in Redis on loopback: +OK to connection set-up, ``reply`` to every script."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn:
            while not self._stop.is_set():
                header = reader.readline()
                if not header.startswith(b"*"):
                    return
                words = []
                for _ in range(int(header[1:])):
                    size = int(reader.readline()[1:])
                    words.append(reader.read(size + 2)[:-2])
                command = words[0].upper()
                if command in (b"EVALSHA", b"EVAL"):
                    conn.sendall(f"-{self.reply}\r\n".encode())
                else:
                    conn.sendall(b"+OK\r\n")

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


@pytest.fixture(params=sorted(NOT_NOW_REPLIES))
def answering(request) -> Iterator[AnsweringServer]:
    server = AnsweringServer(NOT_NOW_REPLIES[request.param])
    yield server
    server.close()


def test_not_now_replies_reach_grpc_clients_as_unavailable(answering):
    client = redis.Redis(host="127.0.0.1", port=answering.port, protocol=2, socket_timeout=5)
    broker = LeaseBroker(client)
    with pytest.raises(BrokerError) as refused:
        broker.create_lease(LeaseRequest(SlotId("merchant-1", "haircut", START_NS, NS_PER_S), "r"))
    assert refused.value.reason is Reason.STORE_UNAVAILABLE
    running = start_server(broker, "127.0.0.1", 0, workers=2)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.BookingServiceStub(channel)
            with pytest.raises(grpc.RpcError) as failed:
                stub.CreateLease(create_request(), timeout=10)
        details = status_details(failed.value)
        assert details.code is grpc.StatusCode.UNAVAILABLE
        assert details.reason == "STORE_UNAVAILABLE"
    finally:
        running.stop(grace=None)
        client.close()
