"""The pipelined asyncio connection (core/async_pipe.py): many calls in flight on one
connection, each with its own reply or error; a call that gives up, a connection that
breaks or hangs, credentials and the database; on redis-servers of the tests' own. And
what the cluster router does with a slot no node serves (its redirections and failovers
are in test_cluster.py)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions
from redis_servers import OwnRedis, own_redis

from leasebroker.core.async_broker import async_twin
from leasebroker.core.async_cluster import ClusterPipes
from leasebroker.core.async_pipe import AsyncPipe
from leasebroker.core.redis_errors import is_unavailable


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis(tmp_path) as running:
        yield running


def with_pipe(url: str, work: Callable[[AsyncPipe], Any], **options: Any) -> Any:
    """``await work(pipe)`` on a fresh loop, with a pipe to ``url``, closed after."""

    async def main() -> Any:
        twin = async_twin(redis.Redis.from_url(url, protocol=2, **options))
        pipe = AsyncPipe(twin)
        try:
            return await work(pipe)
        finally:
            await pipe.close()
            await twin.aclose()

    return asyncio.run(main())


def test_calls_in_flight_together_each_get_their_own_reply(server: OwnRedis) -> None:
    async def work(pipe: AsyncPipe) -> list[Any]:
        return await asyncio.gather(*(pipe.call("ECHO", f"call-{i}") for i in range(300)))

    assert with_pipe(server.url, work) == [f"call-{i}".encode() for i in range(300)]
    # ... on one connection (and the client that counts it).
    clients = server.client().client_list()
    assert len(clients) == 1


def test_an_error_reply_is_its_own_call_s_only(server: OwnRedis) -> None:
    async def work(pipe: AsyncPipe) -> list[Any]:
        return await asyncio.gather(
            pipe.call("ECHO", "before"),
            pipe.call("EVALSHA", "0" * 40, 0),
            pipe.call("INCR", "not-a-number-key-is-fine"),
            pipe.call("HGET", "not-a-number-key-is-fine", "field"),
            pipe.call("ECHO", "after"),
            return_exceptions=True,
        )

    before, noscript, counted, wrong_type, after = with_pipe(server.url, work)
    assert (before, counted, after) == (b"before", 1, b"after")
    # redis-py's classes, as its own client raises them.
    assert isinstance(noscript, redis.exceptions.NoScriptError)
    assert type(wrong_type) is redis.exceptions.ResponseError
    assert "WRONGTYPE" in str(wrong_type)


def test_a_call_that_gave_up_leaves_the_connection_to_the_others(server: OwnRedis) -> None:
    async def work(pipe: AsyncPipe) -> tuple[Any, ...]:
        await pipe.call("SET", "k", "v")  # connected
        server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await pipe.call("ECHO", "given up")
        finally:
            server.process.send_signal(signal.SIGCONT)
        # Its reply comes, and is dropped: the next call gets its own.
        return await pipe.call("GET", "k"), await pipe.call("ECHO", "next")

    assert with_pipe(server.url, work) == (b"v", b"next")


def test_a_call_stops_waiting_at_its_deadline_and_its_late_reply_is_dropped(
    server: OwnRedis,
) -> None:
    async def work(pipe: AsyncPipe) -> tuple[Any, ...]:
        await pipe.call("SET", "k", "v")  # connected
        loop = asyncio.get_running_loop()
        server.process.send_signal(signal.SIGSTOP)
        try:
            started = loop.time()
            with pytest.raises(TimeoutError):
                await pipe.call("ECHO", "late", deadline=started + 0.2)
            waited = loop.time() - started
        finally:
            server.process.send_signal(signal.SIGCONT)
        # Its reply comes, and is dropped: the next call gets its own.
        return waited, await pipe.call("GET", "k"), await pipe.call("ECHO", "next")

    waited, got, echoed = with_pipe(server.url, work)
    assert 0.2 <= waited < 1.0
    assert (got, echoed) == (b"v", b"next")


def test_a_deadline_bounds_the_connecting_too(server: OwnRedis) -> None:
    async def work(pipe: AsyncPipe) -> float:
        loop = asyncio.get_running_loop()
        server.process.send_signal(signal.SIGSTOP)  # accepts, never answers the handshake
        try:
            started = loop.time()
            with pytest.raises(TimeoutError):
                await pipe.call("PING", deadline=started + 0.2)
            return loop.time() - started
        finally:
            server.process.send_signal(signal.SIGCONT)

    # A database in the URL: the handshake's SELECT waits for the stopped server.
    assert 0.2 <= with_pipe(server.url.rsplit("/", 1)[0] + "/3", work) < 1.0


def test_a_broken_connection_fails_its_calls_and_the_next_call_reconnects(
    server: OwnRedis,
) -> None:
    async def work(pipe: AsyncPipe) -> Any:
        await pipe.call("CLIENT", "SETNAME", "the-pipe")
        server.client().client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(redis.exceptions.ConnectionError):
            await pipe.call("PING")
        return await pipe.call("ECHO", "again")

    assert with_pipe(server.url, work) == b"again"


def test_a_hanging_connection_is_given_up_after_the_socket_timeout(server: OwnRedis) -> None:
    async def work(pipe: AsyncPipe) -> Any:
        await pipe.call("PING")
        server.process.send_signal(signal.SIGSTOP)
        try:
            stuck = asyncio.ensure_future(pipe.call("ECHO", "stuck"))
            await asyncio.sleep(pipe.timeout_s + 0.1)
            # The next call sees the oldest one waiting past the socket timeout.
            with pytest.raises(redis.exceptions.TimeoutError):
                await pipe.call("PING")
            with pytest.raises(redis.exceptions.ConnectionError):
                await stuck
        finally:
            server.process.send_signal(signal.SIGCONT)
        return await pipe.call("ECHO", "fresh")

    assert with_pipe(server.url, work, socket_timeout=0.3) == b"fresh"


def test_credentials_and_database_of_the_url(tmp_path: Path) -> None:
    with own_redis(tmp_path) as secured:
        secured.client().config_set("requirepass", "s3cret")
        url = f"redis://:s3cret@127.0.0.1:{secured.port}/2"
        with_pipe(url, lambda pipe: pipe.call("SET", "where", "db2"))
        client = redis.Redis(port=secured.port, password="s3cret", db=2, protocol=2)
        try:
            assert client.get("where") == b"db2"
        finally:
            client.close()
        wrong = f"redis://:nope@127.0.0.1:{secured.port}/0"
        with pytest.raises(redis.exceptions.AuthenticationError):
            with_pipe(wrong, lambda pipe: pipe.call("PING"))


def test_nothing_listening_is_a_connection_error() -> None:
    with pytest.raises(redis.exceptions.ConnectionError):
        with_pipe("redis://127.0.0.1:1/0", lambda pipe: pipe.call("PING"))


class UncoveredCluster:
    """A cluster client whose slot map covers no slot, counting how often it is read."""

    def __init__(self) -> None:
        self.nodes_manager = self
        self.connection_kwargs = {"socket_timeout": 1.0}
        self.initialized = 0

    def get_node_from_slot(self, slot: int) -> Any:
        raise redis.exceptions.SlotNotCoveredError(f'Slot "{slot}" not covered by the cluster.')

    def initialize(self) -> None:
        self.initialized += 1


def test_a_slot_no_node_serves_is_unavailable_and_the_map_is_read_again() -> None:
    cluster = UncoveredCluster()

    async def call() -> Any:
        pipes = ClusterPipes(cluster)  # type: ignore[arg-type]
        try:
            return await pipes.call("lb:{m}:slot", "GET", "lb:{m}:slot")
        finally:
            await pipes.aclose()

    with pytest.raises(redis.exceptions.ClusterDownError, match="no node serves slot") as failed:
        asyncio.run(call())
    assert is_unavailable(failed.value)
    assert cluster.initialized == 1
