"""Feeds built to break the loader are refused with exit 2 and one message, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REAL_REDIS_URL, run_cli

from leasebroker.wire.feed import MAX_FEED_BYTES, FeedError, decode_feed

HOSTILE = {
    "deep-array": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "deep-object": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    "long-integer": (b'[{"spots_open": ' + b"9" * 5_000 + b"}]", "not valid JSON"),
    "not-utf8": (b'[{"merchant_id": "\xff"}]', "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_feed_bytes_are_feed_errors(name):
    data, complaint = HOSTILE[name]
    with pytest.raises(FeedError, match=complaint):
        decode_feed(data)


def test_a_feed_over_the_size_limit_is_refused_before_parsing():
    with pytest.raises(FeedError, match="larger than 64 MiB"):
        decode_feed(b" " * (MAX_FEED_BYTES + 1))


@pytest.fixture
def huge_feed(tmp_path: Path) -> Path:
    path = tmp_path / "huge.json"
    with path.open("wb") as file:
        file.truncate(65 * 1024 * 1024)  # 65 MiB of NULs, made without writing them
    return path


def _hostile_files(tmp_path: Path) -> list[Path]:
    paths = []
    for name, (data, _) in HOSTILE.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.mark.parametrize("command", ["inventory load", "serve --inventory"])
def test_the_cli_refuses_hostile_feeds_with_exit_2(tmp_path, huge_feed, command, key_prefix):
    for path in [*_hostile_files(tmp_path), huge_feed]:
        if command == "inventory load":
            argv = ["inventory", "load", str(path), "--redis-url", REAL_REDIS_URL,
                    "--key-prefix", key_prefix]  # fmt: skip
        else:
            argv = ["serve", "--port", "0", "--admin-port", "-1", "--inventory", str(path)]
        result = run_cli(argv)
        assert result.returncode == 2, (path.name, result.stderr)
        assert result.stderr.startswith("leasebroker: "), result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
