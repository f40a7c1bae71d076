"""An idle `serve`: CPU and Redis commands per second with many merchants registered and
nothing due.

The merchants are registered the way the broker does it (``register_merchant``), then a
`serve` on that key prefix runs untouched; its CPU is utime + stime from /proc, and Redis
commands are the INFO commandstats deltas (every command, INFO itself left out; commands
a script runs count too). Redis's own CPU is INFO's used_cpu_sys + used_cpu_user delta.
On a shared Redis, other clients' commands count too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benchmarks.procs import start_serve


@dataclass
class IdleResult:
    merchants: int
    seconds: float
    serve_cores: float
    redis_calls_per_s: float
    redis_cores: float


def _commands(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(v.get("calls", 0) for k, v in stats.items() if k != "cmdstat_info")


def _redis_cpu(client: Any) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def idle_serve(
    url: str, prefix: str, merchants: int, seconds: float, settle_s: float, workers: int
) -> IdleResult:
    from leasebroker.core.broker import LeaseBroker
    from leasebroker.core.settings import BrokerConfig
    from leasebroker.core.store import connect

    store = connect(url, pool_size=4)
    try:
        client = store.client
        broker = LeaseBroker(client, BrokerConfig(key_prefix=prefix))
        for i in range(merchants):
            broker.register_merchant(f"idle-{i}")
        serve = start_serve(url, prefix, workers)
        try:
            time.sleep(settle_s)
            cpu0, calls0, rcpu0 = serve.cpu_seconds(), _commands(client), _redis_cpu(client)
            started = time.perf_counter()
            time.sleep(seconds)
            cpu1, calls1, rcpu1 = serve.cpu_seconds(), _commands(client), _redis_cpu(client)
            elapsed = time.perf_counter() - started
        finally:
            serve.stop()
        return IdleResult(
            merchants,
            elapsed,
            (cpu1 - cpu0) / elapsed,
            (calls1 - calls0) / elapsed,
            (rcpu1 - rcpu0) / elapsed,
        )
    finally:
        store.close()
