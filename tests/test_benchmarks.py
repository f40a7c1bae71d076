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
from pathlib import Path

import pytest

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
