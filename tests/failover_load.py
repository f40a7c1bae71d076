"""Leases granted without pause while a test fails its Redis over (Sentinel, Cluster),
on the threaded path or on the asyncio one: what each call got, to assert on after.

Every call asks for a slot of its own (a fresh staff id), so none is ever full. A call
answered UNAVAILABLE is retried after 50 ms, as a client would; any other answer, or a
call that never gets through, is kept in ``others`` and stops its worker.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import redis_servers

from leasebroker.core.async_broker import AsyncBroker
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import LeaseRequest
from leasebroker.core.units import NS_PER_S

RETRIES = 400
RETRY_AFTER_S = 0.05
HOUR_NS = 3600 * NS_PER_S


class FailoverLoad:
    """Leases of ``merchant`` through ``broker`` from ``workers`` threads, or (``awaited``)
    from as many coroutines of one event loop, through :class:`AsyncBroker`."""

    def __init__(
        self, broker: LeaseBroker, merchant: str, *, workers: int = 4, awaited: bool = False
    ) -> None:
        self.broker = broker
        self.merchant = merchant
        self.workers = workers
        self.on_a_loop = awaited
        self.ok = 0
        self.unavailable = 0
        self.others: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _request(self, name: str) -> LeaseRequest:
        start = time.time_ns() + HOUR_NS
        return LeaseRequest(SlotId(self.merchant, "svc", start, 1800 * NS_PER_S, name), name)

    def _count(self, outcome: str) -> None:
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def _failed(self, name: str, exc: BrokerError | None) -> bool:
        """Whether the worker stops: an answer other than UNAVAILABLE."""
        if exc is not None and exc.reason is Reason.STORE_UNAVAILABLE:
            self._count("unavailable")
            return False
        self.others.append(exc or AssertionError(f"{name} never succeeded"))
        return True

    def _threaded(self, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            name = f"w{worker}-{n}"
            for _ in range(RETRIES):
                try:
                    self.broker.create_lease(self._request(name))
                    self._count("ok")
                    break
                except BrokerError as exc:
                    if self._failed(name, exc):
                        return
                    time.sleep(RETRY_AFTER_S)
            else:
                self._failed(name, None)
                return

    async def _awaited(self, awaited: AsyncBroker, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            name = f"a{worker}-{n}"
            for _ in range(RETRIES):
                try:
                    await awaited.create_lease(self._request(name))
                    self._count("ok")
                    break
                except BrokerError as exc:
                    if self._failed(name, exc):
                        return
                    await asyncio.sleep(RETRY_AFTER_S)
            else:
                self._failed(name, None)
                return

    async def _loop(self) -> None:
        awaited = AsyncBroker.of(self.broker)
        try:
            await asyncio.gather(*(self._awaited(awaited, w) for w in range(self.workers)))
        finally:
            await awaited.close()

    def __enter__(self) -> FailoverLoad:
        if self.on_a_loop:
            self._threads = [threading.Thread(target=asyncio.run, args=(self._loop(),))]
        else:
            self._threads = [
                threading.Thread(target=self._threaded, args=(w,)) for w in range(self.workers)
            ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def through(self, fail: Callable[[], Any], recovered: Callable[[], bool]) -> int:
        """Once calls get through, ``fail()`` the store; wait for ``recovered()`` and then
        for more calls to get through. The calls that got through before the failure."""
        redis_servers.wait_for(lambda: self.ok > 20 or bool(self.others), "calls to get through")
        before = self.ok
        fail()
        redis_servers.wait_for(recovered, "the failover", 60)
        after = self.ok
        redis_servers.wait_for(
            lambda: self.ok > after + 20 or bool(self.others), "calls after the failover", 60
        )
        return before
