"""Auto-pipelining (core/pipelining.py): calls made at the same time share round trips,
and each caller still gets exactly its own outcome.

To make coalescing certain rather than likely, :class:`HeldSends` holds every script
call at the client until the test lets them go: the first call is then on its way
(held), and every later one queues behind it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis_servers import own_redis
from support import HOUR_NS, START_NS, lease_request, outcome, run_main

from leasebroker.cli.common import open_broker
from leasebroker.cli.parser import build_parser
from leasebroker.core import pipelining
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.deadline import call_deadline
from leasebroker.core.errors import Reason
from leasebroker.core.model import Lease
from leasebroker.core.pipelining import Pipeliner
from leasebroker.core.scripts import BoundScript, ScriptSource
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import connect

CALLS = 40


class HeldSends:
    """Holds each script call on ``client`` (a direct EVALSHA or a pipeline) until
    :meth:`release`, and records what was sent: the direct EVALSHAs, and the commands
    of each pipeline."""

    def __init__(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = threading.Event()
        self.direct: list[str] = []
        self.pipelines: list[list[str]] = []
        send = client.execute_command
        make_pipeline = client.pipeline

        def held(*args: Any, **options: Any) -> Any:
            if args[0] == "EVALSHA":
                self.direct.append(args[0])
                self.opened.wait(20)
            return send(*args, **options)

        def pipeline(*args: Any, **options: Any) -> Any:
            pipe = make_pipeline(*args, **options)
            execute = pipe.execute

            def held_execute(*args: Any, **options: Any) -> Any:
                self.pipelines.append([str(command[0]) for command, _ in pipe.command_stack])
                self.opened.wait(20)
                return execute(*args, **options)

            pipe.execute = held_execute
            return pipe

        monkeypatch.setattr(client, "execute_command", held)
        monkeypatch.setattr(client, "pipeline", pipeline)

    def release(self) -> None:
        self.opened.set()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def in_threads(actions: list[Callable[[], Any]]) -> tuple[list[Any], list[threading.Thread]]:
    """Start one thread per action, in order; their results fill the returned list."""
    results: list[Any] = [None] * len(actions)

    def run(i: int) -> None:
        results[i] = actions[i]()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    return results, threads


def join(threads: list[threading.Thread], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a caller still waits"


def held_race(
    broker: LeaseBroker, held: HeldSends, actions: list[Callable[[], Any]], queued: int
) -> list[Any]:
    """Run ``actions`` from threads while sends are held; let them go once ``queued``
    calls wait for the pipeliner (the first one is on its way, held); their results."""
    pipeliner = broker.pipeliner
    assert pipeliner is not None
    results, threads = in_threads(actions)
    wait_until(lambda: pipeliner.waiting >= queued, f"{queued} queued calls")
    held.release()
    join(threads)
    return results


def test_concurrent_calls_on_one_slot_each_get_their_own_outcome(
    make_broker, redis_client, monkeypatch
):
    broker = make_broker(default_capacity=5)
    broker.create_lease(lease_request(client_reference="warm-up", start_ns=START_NS + HOUR_NS))
    held = HeldSends(redis_client, monkeypatch)
    requests = [lease_request(client_reference=f"ref-{i}") for i in range(CALLS)]
    results = held_race(
        broker,
        held,
        [lambda r=r: outcome(broker.create_lease, r) for r in requests],
        CALLS - 1,
    )
    assert held.direct == ["EVALSHA"]  # the first call went straight through
    assert sum(len(p) for p in held.pipelines) == CALLS - 1
    assert max(len(p) for p in held.pipelines) > 1  # the rest were coalesced
    granted = [r for r in results if isinstance(r, Lease)]
    assert len(granted) == 5
    assert results.count(Reason.SLOT_FULL) == CALLS - 5
    assert len({lease.lease_id for lease in granted}) == 5
    assert sorted(lease.fence for lease in granted) == [1, 2, 3, 4, 5]
    for i, result in enumerate(results):
        if isinstance(result, Lease):  # each caller got its own request's lease
            assert result.client_reference == f"ref-{i}"
            assert broker.get_lease(result.lease_id).client_reference == f"ref-{i}"
    assert broker.slot_status(requests[0].slot).holds == 5


def test_many_slots_from_many_threads_each_get_their_lease(make_broker, redis_client):
    """Unheld: whatever batches form, every caller gets the lease of its own slot."""
    broker = make_broker(default_capacity=1)
    requests = [
        lease_request(client_reference=f"ref-{i}", start_ns=START_NS + i * HOUR_NS)
        for i in range(200)
    ]
    results, threads = in_threads(
        [lambda chunk=chunk: [broker.create_lease(r) for r in chunk] for chunk in
         (requests[i::20] for i in range(20))]
    )  # fmt: skip
    join(threads)
    leases = {lease.client_reference: lease for chunk in results for lease in chunk}
    assert len(leases) == 200
    for request in requests:
        lease = leases[request.client_reference]
        assert lease.slot == request.slot and lease.fence == 1 and not lease.replayed


def test_a_lone_call_is_one_round_trip_and_a_queued_one_one_pipelined_slot(
    broker, redis_client, monkeypatch
):
    broker.create_lease(lease_request(client_reference="warm-up", start_ns=START_NS + HOUR_NS))
    held = HeldSends(redis_client, monkeypatch)
    first = lease_request(client_reference="first")
    second = lease_request(client_reference="second", start_ns=START_NS + 2 * HOUR_NS)
    results = held_race(
        broker,
        held,
        [lambda: broker.create_lease(first), lambda: broker.create_lease(second)],
        1,
    )
    assert [lease.client_reference for lease in results] == ["first", "second"]
    assert held.direct == ["EVALSHA"]
    assert held.pipelines == [["EVALSHA"]]
    # Alone again: straight through, no pipeline.
    broker.create_lease(lease_request(client_reference="third", start_ns=START_NS + 3 * HOUR_NS))
    assert held.direct == ["EVALSHA", "EVALSHA"]
    assert len(held.pipelines) == 1


def echo(client: Any) -> BoundScript:
    """A script that answers its argument, or an error reply for "bad"."""
    text = (
        "-- echo: its argument, or an error for 'bad'\n"
        "if ARGV[1] == 'bad' then return redis.error_reply('ERR bad argument') end\n"
        "return ARGV[1]"
    )
    return BoundScript(client, ScriptSource("echo", 1, text))


def test_an_error_reply_goes_to_its_caller_only(redis_client, key_prefix, monkeypatch):
    pipeliner = Pipeliner(redis_client)
    script = echo(redis_client)
    held = HeldSends(redis_client, monkeypatch)
    words = [f"w{i}" for i in range(20)]
    words[7] = "bad"

    def run(word: str) -> Any:
        try:
            return pipeliner.call(script, [f"{key_prefix}:k"], [word])
        except redis.exceptions.ResponseError as error:
            return error

    results, threads = in_threads([lambda w=w: run(w) for w in words])
    wait_until(lambda: pipeliner.waiting >= len(words) - 1, "queued calls")
    held.release()
    join(threads)
    assert isinstance(results[7], redis.exceptions.ResponseError)
    assert "bad argument" in str(results[7])
    assert [r.decode() for i, r in enumerate(results) if i != 7] == words[:7] + words[8:]
    assert max(len(p) for p in held.pipelines) > 1


def test_calls_recover_when_redis_forgets_its_scripts(make_broker, redis_client, monkeypatch):
    broker = make_broker(default_capacity=100)
    broker.create_lease(lease_request(client_reference="before"))  # the script is loaded
    held = HeldSends(redis_client, monkeypatch)
    requests = [lease_request(client_reference=f"ref-{i}") for i in range(20)]
    results, threads = in_threads([lambda r=r: broker.create_lease(r) for r in requests])
    wait_until(lambda: broker.pipeliner.waiting >= 19, "queued calls")
    redis_client.script_flush()  # SCRIPT FLUSH while every call is on its way
    held.release()
    join(threads)
    assert [lease.client_reference for lease in results] == [f"ref-{i}" for i in range(20)]
    assert broker.slot_status(requests[0].slot).holds == 21


def test_a_bug_while_sending_fails_that_batch_only_and_sending_goes_on(
    redis_client, key_prefix, monkeypatch
):
    pipeliner = Pipeliner(redis_client)
    script = echo(redis_client)
    key = [f"{key_prefix}:k"]
    pipeliner.call(script, key, ["warm-up"])
    held = HeldSends(redis_client, monkeypatch)
    send = pipeliner._pipeline
    failed: list[int] = []

    def fails_once(calls: list[Any], **options: Any) -> None:
        if not failed:
            held.opened.wait(20)
            failed.append(len(calls))
            raise RuntimeError("a bug")
        send(calls, **options)

    monkeypatch.setattr(pipeliner, "_pipeline", fails_once)

    def run(word: str) -> Any:
        try:
            return pipeliner.call(script, key, [word]).decode()
        except RuntimeError as error:
            return error

    results, threads = in_threads([lambda i=i: run(f"first-{i}") for i in range(10)])
    wait_until(lambda: pipeliner.waiting >= 9, "queued calls")
    held.release()
    join(threads)
    assert results[0] == "first-0"  # straight through
    broken = [r for r in results if isinstance(r, RuntimeError)]
    assert len(broken) == failed[0] >= 1  # the callers of the failed batch
    assert [r for r in results if isinstance(r, str)] == [
        f"first-{i}" for i in range(10) if not isinstance(results[i], RuntimeError)
    ]
    # The sender goes on: the next calls that overlap are sent and answered.
    results, threads = in_threads([lambda i=i: run(f"next-{i}") for i in range(10)])
    join(threads)
    assert results == [f"next-{i}" for i in range(10)]


def test_a_batch_answered_noscript_loads_its_scripts_and_is_sent_once_more(
    redis_client, key_prefix, monkeypatch
):
    pipeliner = Pipeliner(redis_client)
    script = echo(redis_client)
    other = BoundScript(redis_client, ScriptSource("other", 1, "-- other: 1\nreturn 1"))
    redis_client.script_flush()  # neither script is known to Redis
    held = HeldSends(redis_client, monkeypatch)
    key = [f"{key_prefix}:k"]
    actions = [lambda: pipeliner.call(other, key, [])]  # on its way first, held
    actions += [lambda i=i: pipeliner.call(script, key, [f"w{i}"]) for i in range(10)]
    results, threads = in_threads(actions[:1])
    wait_until(lambda: held.direct == ["EVALSHA"], "the first call on its way")
    queued, more = in_threads(actions[1:])
    wait_until(lambda: pipeliner.waiting == 10, "queued calls")
    held.release()
    join(threads + more)
    assert results == [1]
    assert [r.decode() for r in queued] == [f"w{i}" for i in range(10)]
    # The batch that reached Redis first was answered NOSCRIPT, and sent once more.
    assert sum(len(p) for p in held.pipelines) > 10


@pytest.fixture
def breakable(
    backend: str, redis_client: Any, tmp_path
) -> Iterator[tuple[Any, Callable[[], None]]]:
    """A client and what breaks its connection for good. Fake: the server disconnects;
    real: a Redis of the test's own is killed (never the shared one)."""
    if backend == "fake":
        server = redis_client.connection_pool.connection_kwargs["server"]
        yield redis_client, lambda: setattr(server, "connected", False)
        return
    with own_redis(tmp_path) as running:
        store = connect(f"redis://127.0.0.1:{running.port}/0", pool_size=8)
        yield store.client, running.process.kill
        store.close()


def test_a_broken_connection_fails_every_waiting_call_as_unavailable(
    breakable, key_prefix, monkeypatch
):
    """Every caller, the one on its way and the queued ones, gets STORE_UNAVAILABLE (safe
    to retry), and none hangs."""
    client, break_it = breakable
    broker = LeaseBroker(client, BrokerConfig(key_prefix=key_prefix, default_capacity=100))
    broker.create_lease(lease_request(client_reference="before"))
    held = HeldSends(client, monkeypatch)
    requests = [lease_request(client_reference=f"ref-{i}") for i in range(20)]
    results, threads = in_threads([lambda r=r: outcome(broker.create_lease, r) for r in requests])
    wait_until(lambda: broker.pipeliner.waiting >= 19, "queued calls")
    break_it()
    began = time.monotonic()
    held.release()
    join(threads)
    assert results == [Reason.STORE_UNAVAILABLE] * 20
    assert time.monotonic() - began < 10


def test_a_call_whose_deadline_passes_while_queued_gives_up_and_is_never_sent(
    make_broker, redis_client, monkeypatch
):
    """Calls held on their way, and calls queued behind them, end at their deadline with
    DEADLINE_EXCEEDED. The queued ones are never sent; the ones already sent reach Redis
    after their deadline, and their script refuses: no late call takes a spot."""
    broker = make_broker(default_capacity=100)
    broker.now_ms()  # a reading of Redis's clock: the scripts get deadlines
    broker.create_lease(lease_request(client_reference="warm-up", start_ns=START_NS + HOUR_NS))
    held = HeldSends(redis_client, monkeypatch)
    first = lease_request(client_reference="first")
    firsts, first_thread = in_threads([lambda: broker.create_lease(first)])
    wait_until(lambda: held.direct == ["EVALSHA"], "the first call on its way")

    def late(ref: str) -> tuple[Any, float]:
        began = time.monotonic()
        with call_deadline(0.5):
            result = outcome(broker.create_lease, lease_request(client_reference=ref))
        return result, time.monotonic() - began

    calls = []
    for i in range(pipelining.SENDERS):  # one call in each sender's (held) batch
        calls.append(in_threads([lambda i=i: late(f"sent-{i}")]))
        wait_until(lambda i=i: len(held.pipelines) == i + 1, "a batch on its way")
    calls.append(in_threads([lambda i=i: late(f"queued-{i}") for i in range(10)]))
    join([t for _, threads in calls for t in threads], timeout_s=10)  # sends still held
    for result, took in [r for results, _ in calls for r in results]:
        assert result is Reason.DEADLINE_EXCEEDED
        assert took < 1.5
    time.sleep(0.5)  # past the deadline's slack: a call that was sent refuses in Redis
    held.release()
    join(first_thread)
    assert firsts[0].client_reference == "first"
    assert held.pipelines == [["EVALSHA"]] * pipelining.SENDERS  # the queued never left
    assert broker.slot_status(first.slot).holds == 1  # no late call took a spot


def test_auto_pipelining_off_sends_each_call_alone(redis_client, key_prefix, monkeypatch):
    broker = LeaseBroker(redis_client, BrokerConfig(key_prefix=key_prefix), auto_pipeline=False)
    assert broker.pipeliner is None
    pipelines: list[Any] = []
    make_pipeline = redis_client.pipeline
    monkeypatch.setattr(
        redis_client, "pipeline", lambda *a, **k: pipelines.append(1) or make_pipeline(*a, **k)
    )
    requests = [
        lease_request(client_reference=f"ref-{i}", start_ns=START_NS + i * HOUR_NS)
        for i in range(40)
    ]
    results, threads = in_threads([lambda r=r: broker.create_lease(r) for r in requests])
    join(threads)
    assert all(isinstance(r, Lease) for r in results)
    assert pipelines == []


def test_serve_turns_it_off_by_flag_or_variable(monkeypatch, store_args, capsys):
    assert build_parser().parse_args(["serve"]).auto_pipelining is True
    off = build_parser().parse_args(["serve", *store_args, "--auto-pipelining", "off"])
    assert off.auto_pipelining is False
    store, broker = open_broker(off, pool_size=4)
    try:
        assert broker.pipeliner is None
    finally:
        store.close()
    monkeypatch.setenv("LEASEBROKER_AUTO_PIPELINING", "0")
    assert build_parser().parse_args(["serve"]).auto_pipelining is False
    assert run_main(["serve", "--auto-pipelining", "maybe"]) == 2
    assert "--auto-pipelining" in capsys.readouterr().err


def test_a_forked_child_pipelines_afresh(make_broker, redis_client, monkeypatch):
    """The parent's sender threads are not in a forked child (and a lock may have been
    held at the fork): the child's calls still coalesce and each gets its lease."""
    broker = make_broker(default_capacity=1)
    broker.create_lease(lease_request(client_reference="warm-up", start_ns=START_NS - HOUR_NS))
    held = HeldSends(redis_client, monkeypatch)
    requests = [
        lease_request(client_reference=f"parent-{i}", start_ns=START_NS + i * HOUR_NS)
        for i in range(8)
    ]
    results, threads = in_threads([lambda r=r: broker.create_lease(r) for r in requests])
    wait_until(lambda: broker.pipeliner.waiting >= 7, "queued calls")
    pid = os.fork()  # calls queued, senders held: the child gets none of them
    if pid == 0:
        code = 1
        try:
            held.release()
            children = [
                lease_request(client_reference=f"child-{i}", start_ns=START_NS + (20 + i) * HOUR_NS)
                for i in range(8)
            ]
            leases, more = in_threads([lambda r=r: broker.create_lease(r) for r in children])
            join(more, timeout_s=20)
            code = (
                0 if [x.client_reference for x in leases] == [f"child-{i}" for i in range(8)] else 3
            )
        finally:
            os._exit(code)
    held.release()
    join(threads)
    assert [lease.client_reference for lease in results] == [r.client_reference for r in requests]
    assert os.waitpid(pid, 0)[1] == 0


def test_record_reads_share_pipelines_with_script_calls(make_broker, redis_client, monkeypatch):
    """The HGETALL before a booking's script (and any record read) queues like a script
    call while another call is on its way, and each reader gets its own record."""
    broker = make_broker(default_capacity=1)
    pipeliner = broker.pipeliner
    assert pipeliner is not None
    leases = [
        broker.create_lease(
            lease_request(client_reference=f"ref-{i}", start_ns=START_NS + i * HOUR_NS)
        )
        for i in range(10)
    ]
    held = HeldSends(redis_client, monkeypatch)
    first, first_threads = in_threads(
        [
            lambda: broker.create_lease(
                lease_request(client_reference="on-its-way", start_ns=START_NS - HOUR_NS)
            )
        ]
    )
    wait_until(lambda: held.direct == ["EVALSHA"], "the first call on its way")
    reads, read_threads = in_threads(
        [lambda lease=lease: broker.get_lease(lease.lease_id) for lease in leases]
    )
    wait_until(lambda: pipeliner.waiting >= len(leases), "the reads queued")
    held.release()
    join(first_threads + read_threads)
    assert first[0].client_reference == "on-its-way"
    assert [cmd for pipeline in held.pipelines for cmd in pipeline] == ["HGETALL"] * len(leases)
    assert [view.lease_id for view in reads] == [lease.lease_id for lease in leases]
    assert [view.client_reference for view in reads] == [f"ref-{i}" for i in range(10)]
