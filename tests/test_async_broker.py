"""The BookingService's operations on an asyncio client (core/async_broker.py): the same
script calls, answers, refusals and side writes as the threaded LeaseBroker methods, the
same round trips, and an asyncio twin of every single-node client the broker can be
given."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.backoff
import redis.retry
from conftest import real_redis_or_skip
from support import (
    HOUR_NS,
    MERCHANT,
    REAL_REDIS_URL,
    START_NS,
    booking_request,
    create_request,
    lease_request,
)

from leasebroker.core.async_broker import AsyncBroker, async_twin
from leasebroker.core.async_pipe import AsyncPipe
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.deadline import call_deadline, remaining_s
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import SOCKET_TIMEOUT_S, RedisTls, connect
from leasebroker.core.units import NS_PER_S


def run_async(broker: LeaseBroker, work: Callable[[AsyncBroker], Any]) -> Any:
    """``await work(leases)`` on a fresh event loop with a fresh twin, closed after."""

    async def main() -> Any:
        leases = AsyncBroker(broker, async_twin(broker.client))
        try:
            return await work(leases)
        finally:
            await leases.close()

    return asyncio.run(main())


class OwnClient(redis.Redis):
    """A client class of an application's own: async_twin knows no twin for it."""


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        lease = call()
    except BrokerError as error:
        return "refused", (error.reason, error.message, error.violations)
    return "granted", (lease.slot, lease.expires_at_ms > 0, lease.fence, lease.replayed)


REQUESTS = [
    ("first", {}),
    ("replay of first", {}),
    ("same reference, other slot", {"start_ns": START_NS + 3_600 * NS_PER_S}),
    ("slot taken", {"client_reference": "ref-2"}),
    ("start passed", {"client_reference": "ref-3", "start_ns": time.time_ns() - NS_PER_S}),
    ("bad merchant", {"client_reference": "ref-4", "merchant_id": ""}),
    ("second slot", {"client_reference": "ref-5", "start_ns": START_NS + 7_200 * NS_PER_S}),
]


def test_the_same_answers_as_the_threaded_path(make_broker: Callable[..., LeaseBroker]) -> None:
    threaded = make_broker()
    awaited = LeaseBroker(
        threaded.client, BrokerConfig(key_prefix=threaded.config.key_prefix + "a")
    )
    try:
        expected = [
            outcome(lambda o=o: threaded.create_lease(lease_request(**o))) for _, o in REQUESTS
        ]

        async def each(leases: AsyncBroker) -> list[tuple[str, Any]]:
            found = []
            for _, overrides in REQUESTS:
                try:
                    lease = await leases.create_lease(lease_request(**overrides))
                except BrokerError as error:
                    found.append(("refused", (error.reason, error.message, error.violations)))
                else:
                    found.append(
                        (
                            "granted",
                            (lease.slot, lease.expires_at_ms > 0, lease.fence, lease.replayed),
                        )
                    )
            return found

        assert run_async(awaited, each) == expected
        assert [kind for kind, _ in expected] == [
            "granted", "granted", "refused", "refused", "refused", "refused", "granted",
        ]  # fmt: skip
    finally:
        keys = list(awaited.client.scan_iter(match=awaited.config.key_prefix + ":*"))
        if keys:
            awaited.client.delete(*keys)


def test_a_grant_is_a_lease_the_broker_knows(broker: LeaseBroker) -> None:
    lease = run_async(broker, lambda leases: leases.create_lease(lease_request()))
    view = broker.get_lease(lease.lease_id)
    assert view.state.value == "held" and view.fence == lease.fence
    assert view.expires_at_ms == lease.expires_at_ms
    # The sweeper's registry and due index, as the threaded path writes them.
    assert MERCHANT in broker.merchants()
    assert broker.due_merchants(lease.expires_at_ms, 10) == [(MERCHANT, lease.expires_at_ms)]


def test_a_passed_deadline_sends_nothing(broker: LeaseBroker) -> None:
    async def late(leases: AsyncBroker) -> Any:
        with call_deadline(-1.0):
            return await leases.create_lease(lease_request())

    with pytest.raises(BrokerError) as caught:
        run_async(broker, late)
    assert caught.value.reason is Reason.DEADLINE_EXCEEDED
    assert broker.list_leases(MERCHANT) == []


def test_scripts_are_loaded_again_after_script_flush(broker: LeaseBroker) -> None:
    async def twice(leases: AsyncBroker) -> Any:
        await leases.create_lease(lease_request())
        await leases.client.script_flush()
        return await leases.create_lease(
            lease_request(client_reference="after-flush", start_ns=START_NS + 3_600 * NS_PER_S)
        )

    assert run_async(broker, twice).fence == 1


def test_an_unreachable_store_is_unavailable() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, protocol=2, socket_connect_timeout=0.2)
    broker = LeaseBroker(client, BrokerConfig(key_prefix="lbtest-async-unreachable"))
    with pytest.raises(BrokerError) as caught:
        run_async(broker, lambda leases: leases.create_lease(lease_request()))
    assert caught.value.reason is Reason.STORE_UNAVAILABLE


# ---------------------------------------------------------------- async_twin


def pool_of(client: Any) -> Any:
    return client.connection_pool


def test_a_twin_of_a_url_client_talks_to_the_same_server_and_db() -> None:
    real_redis_or_skip().close()
    store = connect("redis://127.0.0.1:6379/3", pool_size=7)
    twin = async_twin(store.client)
    try:
        assert isinstance(twin, redis.asyncio.Redis)
        options = pool_of(twin).connection_kwargs
        assert (options["host"], options["port"], options["db"]) == ("127.0.0.1", 6379, 3)
        assert (
            options["socket_timeout"] == pool_of(store.client).connection_kwargs["socket_timeout"]
        )
        assert pool_of(twin).max_connections == 7
        assert pool_of(twin).connection_class is redis.asyncio.Connection
        assert options["retry"].get_retries() == 2  # as the threaded client's
    finally:
        store.close()


def test_a_twin_keeps_the_application_clients_retries_and_backoff() -> None:
    backoff = redis.backoff.ConstantBackoff(0.05)
    client = redis.Redis(host="127.0.0.1", port=6390, retry=redis.retry.Retry(backoff, 5))
    twin = async_twin(client)
    retry = pool_of(twin).connection_kwargs["retry"]
    assert isinstance(retry, redis.asyncio.retry.Retry)
    assert retry.get_retries() == 5
    assert isinstance(retry._backoff, redis.backoff.ConstantBackoff)
    assert retry._backoff.compute(1) == 0.05
    client.close()


class RetryWithoutBackoffAttribute(redis.retry.Retry):
    """A Retry as a later redis-py might keep it: no ``_backoff`` attribute."""

    def __getattribute__(self, name: str) -> Any:
        if name == "_backoff":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_a_twin_is_made_when_the_retry_hides_its_backoff() -> None:
    hidden = RetryWithoutBackoffAttribute(redis.backoff.ConstantBackoff(0.05), 4)
    client = redis.Redis(host="127.0.0.1", port=6390, retry=hidden)
    retry = pool_of(async_twin(client)).connection_kwargs["retry"]
    assert retry.get_retries() == 4
    assert isinstance(retry._backoff, redis.backoff.ExponentialWithJitterBackoff)  # store's
    client.close()


def test_twins_of_tls_and_unix_socket_clients(tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made")
    tls = connect("rediss://127.0.0.1:6390/0", pool_size=2, tls=RedisTls(ca=str(ca)))
    unix = connect("unix:///tmp/lbtest-no-such.sock?db=2", pool_size=2)
    try:
        tls_twin, unix_twin = async_twin(tls.client), async_twin(unix.client)
        assert pool_of(tls_twin).connection_class is redis.asyncio.SSLConnection
        assert pool_of(tls_twin).connection_kwargs["ssl_ca_certs"] == str(ca)
        assert pool_of(unix_twin).connection_class is redis.asyncio.UnixDomainSocketConnection
        assert pool_of(unix_twin).connection_kwargs["path"] == "/tmp/lbtest-no-such.sock"
        assert pool_of(unix_twin).connection_kwargs["db"] == 2
    finally:
        tls.close()
        unix.close()


def test_a_twin_of_the_embedded_store_shares_its_data() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), protocol=2)
    client.set("seen", "yes")

    async def read() -> Any:
        twin = async_twin(client)
        try:
            return await twin.get("seen")
        finally:
            await twin.aclose()

    assert asyncio.run(read()) == b"yes"


def test_a_sentinel_client_s_twin_asks_the_same_sentinels_for_the_same_service() -> None:
    url = "redis+sentinel://ada:s3cret@127.0.0.1:1,127.0.0.1:2/mymaster/3"
    store = connect(url, pool_size=6)

    async def inspect() -> dict[str, Any]:
        twin = async_twin(store.client)
        pool = twin.connection_pool
        try:
            manager = pool.sentinel_manager
            return {
                "pool": type(pool),
                "service": pool.service_name,
                "sentinels": [
                    (
                        s.connection_pool.connection_kwargs["host"],
                        s.connection_pool.connection_kwargs["port"],
                    )
                    for s in manager.sentinels
                ],
                "sentinel timeout": manager.sentinel_kwargs.get("socket_timeout"),
                "primary": {
                    k: pool.connection_kwargs.get(k)
                    for k in ("db", "username", "password", "socket_timeout")
                },
                "max connections": pool.max_connections,
            }
        finally:
            await twin.aclose()

    try:
        seen = asyncio.run(inspect())
    finally:
        store.close()
    assert seen == {
        "pool": redis.asyncio.sentinel.SentinelConnectionPool,
        "service": "mymaster",
        "sentinels": [("127.0.0.1", 1), ("127.0.0.1", 2)],
        "sentinel timeout": SOCKET_TIMEOUT_S,
        "primary": {
            "db": 3,
            "username": "ada",
            "password": "s3cret",
            "socket_timeout": SOCKET_TIMEOUT_S,
        },
        "max connections": 6,
    }


def commands_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the commands the asyncio path sends from now on: on the pipelined
    connection (a real Redis) or the asyncio client (the embedded store)."""
    sent: list[str] = []
    original_call = AsyncPipe.call
    original_execute = redis.asyncio.Redis.execute_command

    async def pipe_call(self: AsyncPipe, *command: Any, **options: Any) -> Any:
        sent.append(str(command[0]))
        return await original_call(self, *command, **options)

    async def execute(self: Any, *command: Any, **options: Any) -> Any:
        sent.append(str(command[0]))
        return await original_execute(self, *command, **options)

    monkeypatch.setattr(AsyncPipe, "call", pipe_call)
    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", execute)
    return sent


def test_an_awaited_create_lease_is_one_round_trip(
    broker: LeaseBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One EVALSHA per lease once the merchant is known (registry and due index written
    by an earlier lease), on the pipelined connection (a real Redis) or on the asyncio
    client (the embedded store)."""
    sent = commands_sent(monkeypatch)

    async def two(leases: AsyncBroker) -> Any:
        await leases.create_lease(lease_request(client_reference="warm-up"))
        sent.clear()
        later = START_NS + 3_600 * NS_PER_S
        return await leases.create_lease(lease_request(client_reference="r", start_ns=later))

    assert run_async(broker, two).fence == 1
    assert sent == ["EVALSHA"]


# ---------------------------------------------------------------- bookings


class Awaited:
    """AsyncBroker's operations called as the threaded broker's are (one event loop)."""

    def __init__(self, broker: LeaseBroker) -> None:
        self.loop = asyncio.new_event_loop()
        self.ops = AsyncBroker(broker, async_twin(broker.client))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.ops, name)
        return lambda *args: self.loop.run_until_complete(method(*args))

    def close(self) -> None:
        self.loop.run_until_complete(self.ops.close())
        self.loop.close()


def booking_story(ops: Any) -> list[tuple[str, Any]]:
    """Lease, book (and again), cancel (and again), book another, move it to a free
    slot, then to a taken one, then book a third with a wrong fencing token."""
    found: list[tuple[str, Any]] = []

    def step(call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except BrokerError as error:
            found.append(("refused", error.reason))
            return None
        found.append(
            ("ok", (getattr(result, "status", None), result.fence, result.replayed, result.slot))
        )
        return result

    later, latest = (START_NS + k * HOUR_NS for k in (1, 2))
    first = step(lambda: ops.create_lease(lease_request(client_reference="a")))
    booking = step(lambda: ops.create_booking(booking_request(first.lease_id)))
    step(lambda: ops.create_booking(booking_request(first.lease_id)))
    step(lambda: ops.create_booking(booking_request(first.lease_id, name="Grace")))
    step(lambda: ops.cancel_booking(booking.booking_id))
    step(lambda: ops.cancel_booking(booking.booking_id))
    second = step(lambda: ops.create_lease(lease_request(client_reference="b")))
    moved = step(lambda: ops.create_booking(booking_request(second.lease_id)))
    step(lambda: ops.reschedule_booking(moved.booking_id, later, None))
    step(lambda: ops.create_lease(lease_request(client_reference="c", start_ns=latest)))
    step(lambda: ops.reschedule_booking(moved.booking_id, latest, None))
    step(lambda: ops.reschedule_booking("b.bm9uZQ.AAAAAAAAAAAAAAAAAAAAAA", later, None))
    third = step(lambda: ops.create_lease(lease_request(client_reference="d", start_ns=START_NS)))
    step(lambda: ops.create_booking(booking_request(third.lease_id, expected_fence=99)))
    return found


def test_bookings_the_same_as_the_threaded_path(make_broker: Callable[..., LeaseBroker]) -> None:
    threaded = make_broker()
    awaited_broker = LeaseBroker(
        threaded.client, BrokerConfig(key_prefix=threaded.config.key_prefix + "a")
    )
    awaited = Awaited(awaited_broker)
    try:
        expected = booking_story(threaded)
        assert booking_story(awaited) == expected
        assert [found if kind == "refused" else kind for kind, found in expected] == [
            "ok", "ok", "ok", Reason.LEASE_ALREADY_BOOKED, "ok", "ok", "ok", "ok", "ok",
            "ok", Reason.SLOT_FULL, Reason.BOOKING_NOT_FOUND, "ok", Reason.FENCING_TOKEN_STALE,
        ]  # fmt: skip
    finally:
        awaited.close()
        keys = list(threaded.client.scan_iter(match=awaited_broker.config.key_prefix + ":*"))
        if keys:
            threaded.client.delete(*keys)


def test_an_awaited_booking_change_reads_the_record_and_runs_its_script(
    broker: LeaseBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = commands_sent(monkeypatch)
    awaited = Awaited(broker)
    try:
        for k, reference in enumerate(("warm-up", "counted")):  # scripts loaded by the first
            lease = awaited.create_lease(
                lease_request(client_reference=reference, start_ns=START_NS + k * HOUR_NS)
            )
            sent.clear()
            booking = awaited.create_booking(booking_request(lease.lease_id))
            assert sent == ["HGETALL", "EVALSHA"] or reference == "warm-up"
            sent.clear()
            awaited.cancel_booking(booking.booking_id)
            assert sent == ["HGETALL", "EVALSHA"] or reference == "warm-up"
    finally:
        awaited.close()


def test_of_refuses_a_store_without_an_asyncio_twin() -> None:
    client = OwnClient(host="127.0.0.1", port=1, protocol=2)
    with pytest.raises(ValueError, match="no asyncio twin for a client of class OwnClient"):
        AsyncBroker.of(LeaseBroker(client, BrokerConfig(key_prefix="lbtest-no-twin")))


def test_of_a_broker_makes_its_twin(broker: LeaseBroker) -> None:
    async def grant() -> Any:
        awaited = AsyncBroker.of(broker)
        try:
            return await awaited.create_lease(lease_request())
        finally:
            await awaited.close()

    assert asyncio.run(grant()).fence == 1


def test_a_client_without_a_twin_is_served_from_handler_threads(
    key_prefix: str, make_stub: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_redis_or_skip().close()
    client = OwnClient.from_url(REAL_REDIS_URL, protocol=2)
    broker = LeaseBroker(client, BrokerConfig(key_prefix=key_prefix))
    assert async_twin(client) is None
    seen: list[tuple[str, float | None]] = []
    create_lease = broker.create_lease

    def spied(request: Any) -> Any:
        seen.append((threading.current_thread().name, remaining_s()))
        return create_lease(request)

    monkeypatch.setattr(broker, "create_lease", spied)
    try:
        stub = make_stub(broker)
        reply = stub.CreateLease(create_request(), timeout=30)
        assert reply.lease.lease_id == broker.get_lease(reply.lease.lease_id).lease_id
        [(thread, remaining)] = seen
        assert thread.startswith("rpc")  # a handler thread, not the event loop's
        # With the call's deadline: gRPC sends it as a timeout it may round up a little.
        assert remaining is not None and 0 < remaining <= 31
    finally:
        for key in client.scan_iter(match=f"{key_prefix}*"):
            client.delete(key)
        client.close()


# ---------------------------------------------------------------- the sweeper's bookkeeping

BOOKKEEPING = {"SADD", "ZADD"}


def failing_bookkeeping(monkeypatch: pytest.MonkeyPatch, client: Any, failing: set[str]) -> None:
    """From now on the registry and due-index writes (``failing``'s commands) fail as a
    broken connection would, on the threaded client and on the asyncio path alike."""

    def guard(command: tuple[Any, ...]) -> None:
        if str(command[0]) in failing:
            raise redis.exceptions.ConnectionError("the connection broke")

    execute = client.execute_command
    pipe_call = AsyncPipe.call
    fake_execute = fakeredis.FakeAsyncRedis.execute_command

    def threaded(*command: Any, **options: Any) -> Any:
        guard(command)
        return execute(*command, **options)

    async def piped(self: AsyncPipe, *command: Any, **options: Any) -> Any:
        guard(command)
        return await pipe_call(self, *command, **options)

    async def faked(self: Any, *command: Any, **options: Any) -> Any:
        guard(command)
        return await fake_execute(self, *command, **options)

    monkeypatch.setattr(client, "execute_command", threaded)
    monkeypatch.setattr(AsyncPipe, "call", piped)
    monkeypatch.setattr(fakeredis.FakeAsyncRedis, "execute_command", faked)


@pytest.mark.parametrize("driver", ["threaded", "asyncio"])
def test_a_failed_bookkeeping_write_keeps_the_lease_and_the_next_lease_writes_it(
    broker: LeaseBroker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    driver: str,
) -> None:
    failing = set(BOOKKEEPING)
    failing_bookkeeping(monkeypatch, broker.client, failing)
    awaited = Awaited(broker) if driver == "asyncio" else None
    ops: Any = awaited or broker
    far = time.time_ns() // 1_000_000 + 10 * 24 * 3600 * 1000
    try:
        with caplog.at_level(logging.WARNING):
            lease = ops.create_lease(lease_request())
        assert lease.fence == 1  # granted all the same
        assert broker.get_lease(lease.lease_id).state == "held"
        warned = " ".join(r.getMessage() for r in caplog.records)
        assert "could not register merchant for the expiry sweeper" in warned
        assert "could not mark a merchant due for the sweeper" in warned
        assert MERCHANT not in broker.merchants()
        assert MERCHANT not in dict(broker.due_merchants(far, 10))

        failing.clear()  # the store is back: the next lease writes what the first did not
        ops.create_lease(lease_request(client_reference="r2", start_ns=START_NS + HOUR_NS))
        assert MERCHANT in broker.merchants()
        assert MERCHANT in dict(broker.due_merchants(far, 10))
    finally:
        if awaited is not None:
            awaited.close()
