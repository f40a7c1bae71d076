"""benchmarks/run.py runs every measurement end to end (tiny sizes, --smoke): each
produces a number and the table prints. No speed is asserted: that is what the
benchmark itself reports, as ratios, on the machine that runs it."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("redis-server", "redis-benchmark")

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in NEEDED) and not os.environ.get("CI"),
    reason="needs the redis-server and redis-benchmark binaries",
)


def test_every_measurement_produces_a_number_and_the_table_prints(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    grpc = data["grpc"]
    for name in ("noop@16", "noop_ping@16", "CreateLease@16", "CreateBooking@16",
                 "UpdateBooking@16", "CreateLease_1_process",
                 "CreateLease_2_processes"):  # fmt: skip
        assert grpc[name]["rps"] > 0 and not grpc[name]["errors"], name
    assert grpc["paced_CreateLease"]["p99_ms"] > 0 and grpc["paced_noop"]["p99_ms"] > 0
    # The p99 row shows the median of the alternated paced rounds, and it is their pair.
    ratios = grpc["paced_ratios"]
    assert len(ratios) == 3 and ratios == sorted(ratios) and all(r > 0 for r in ratios)
    (p99_row,) = [row for row in data["rows"] if row["measurement"].startswith("p99 ")]
    assert p99_row["ratio"] == pytest.approx(ratios[1], abs=0.001)
    assert "median of 3 alternated rounds" in p99_row["detail"]
    for name in ("minimal_redis_benchmark", "create_lease_redis_benchmark",
                 "library_create_lease", "library_create_lease_unpipelined",
                 "library_create_lease_asyncio", "minimal_from_threads",
                 "create_lease_redis_benchmark_events_off",
                 "library_create_lease_asyncio_events_off",
                 "create_lease_commands_redis_benchmark"):  # fmt: skip
        assert data["redis"][name]["rps"] > 0 and data["redis"][name]["usec_per_call"] > 0
    # Each library row keeps the fastest of its alternated rounds.
    rounds = data["redis"]["library_rounds_rps"]
    assert len(rounds) == 3 and all(len(run) == 5 for run in rounds)
    for column, name in enumerate(("library_create_lease", "library_create_lease_unpipelined",
                                   "minimal_from_threads", "library_create_lease_asyncio",
                                   "library_create_lease_asyncio_events_off")):  # fmt: skip
        assert round(data["redis"][name]["rps"]) == max(run[column] for run in rounds), name
    (lib_row,) = [r for r in data["rows"] if r["measurement"] == "library create_lease, 32 threads"]
    assert "fastest of 3 alternated rounds" in lib_row["detail"]
    assert data["memory"]["bytes_per_lease"] > 0
    assert "events" in data["memory"]["by_kind"]
    # The same leases with the event streams off: every other kind, and no stream.
    quiet = data["memory_events_off"]
    assert quiet["bytes_per_lease"] > 0
    assert set(quiet["by_kind"]) == set(data["memory"]["by_kind"]) - {"events"}
    # The floor: the same key kinds as the leases', nothing in them.
    floor = data["memory_floor"]
    assert set(floor["by_kind"]) == set(data["memory"]["by_kind"])
    assert 0 < floor["bytes_per_lease"] < data["memory"]["bytes_per_lease"]
    for name in ("serve_cores", "redis_calls_per_s", "redis_cores"):
        assert math.isfinite(data["idle"][name]) and data["idle"][name] >= 0
    rows = data["rows"]
    assert len(rows) == 20  # one concurrency in the smoke profile
    assert all(row["met"] is not None for row in rows if row["target"])
    header = result.stdout.splitlines()[1]
    assert header.split() == ["Measurement", "Value", "Ratio", "Target", "Met"]
    for row in rows:
        assert row["measurement"] in result.stdout


def _command_calls(client) -> dict[str, int]:
    """Calls per command so far (INFO commandstats), scripts' own left out."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(stat["calls"])
        for name, stat in stats.items()
        if name not in ("cmdstat_eval", "cmdstat_evalsha", "cmdstat_info")
    }


def test_create_lease_commands_are_the_commands_of_a_grant():
    """The benchmark's floor script (CREATE_LEASE_COMMANDS) runs the very commands
    create_lease runs to grant a lease on a merchant without inventory, as many of each:
    counted by Redis itself, on a redis-server of the test's own."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.procs import start_private_redis
    from benchmarks.redis_cost import CREATE_LEASE_COMMANDS
    from leasebroker.core.broker import LeaseBroker
    from leasebroker.core.keys import SlotId
    from leasebroker.core.model import LeaseRequest
    from leasebroker.core.outcomes import Outcome
    from leasebroker.core.settings import BrokerConfig

    proc, url = start_private_redis()
    try:
        client = redis.Redis.from_url(url)
        broker = LeaseBroker(client, BrokerConfig(key_prefix="floor"))
        start = time.time_ns() + 24 * 3600 * 10**9
        counted = []
        for i, text in enumerate((broker.scripts["create_lease"].text, CREATE_LEASE_COMMANDS)):
            slot = SlotId("m", "svc", start + i * 60 * 10**9, 1800 * 10**9)
            keys, args = broker.create_lease_call(LeaseRequest(slot, f"ref-{i}"))
            before = _command_calls(client)
            reply = client.eval(text, len(keys), *keys, *args)
            after = _command_calls(client)
            counted.append(Counter(after) - Counter(before))
            if i == 0:
                assert reply[0] == Outcome.OK  # a grant, not a refusal
        script, floor = counted
        assert script == floor
        assert sum(script.values()) == 13 and script["xadd"] == 1
        client.close()
    finally:
        proc.stop()
