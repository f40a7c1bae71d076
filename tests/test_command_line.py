"""The command line as a user meets it: --version, python -m, every --help naming each
option's default and LEASEBROKER_* variable, booleans, and every malformed value a
usage error (exit 2) without a traceback."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from support import run_cli, run_main

from leasebroker import __version__
from leasebroker.cli.parser import build_parser

pytestmark = pytest.mark.usefixtures("no_leasebroker_env")


def subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from subcommands(child, (*path, name))


def test_version_and_python_dash_m() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == f"leasebroker {__version__}"
    module = subprocess.run(
        [sys.executable, "-m", "leasebroker", "--help"], capture_output=True, text=True
    )
    assert module.returncode == 0 and "serve" in module.stdout


def test_every_help_names_each_default_and_variable(capsys) -> None:
    walked = 0
    for path, parser in subcommands(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.default == argparse.SUPPRESS:
                continue
            flag = action.option_strings[-1]
            help = action.help or ""
            if not action.required:
                assert "default" in help, f"{' '.join(path)} {flag}: {help!r}"
            walked += 1
        with pytest.raises(SystemExit) as done:
            parser.parse_args(["--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        if path and path[0] == "serve":
            for action in parser._actions:
                if action.option_strings and action.default != argparse.SUPPRESS:
                    name = "LEASEBROKER_" + action.dest.upper()
                    assert name in text.replace("\n", " ").replace("  ", ""), name
    assert walked > 100


@pytest.mark.parametrize("word", ["1", "true", "TRUE", "Yes", "on", "ON"])
def test_boolean_variables_accept_on_words(word: str, monkeypatch) -> None:
    monkeypatch.setenv("LEASEBROKER_REDIS_CLUSTER", word)
    args = build_parser().parse_args(["slots", "--merchant", "m", "--redis-url", "redis://h/0"])
    assert args.redis_cluster is True


@pytest.mark.parametrize("word", ["0", "false", "False", "NO", "off", ""])
def test_boolean_variables_accept_off_words(word: str, monkeypatch) -> None:
    monkeypatch.setenv("LEASEBROKER_REDIS_CLUSTER", word)
    args = build_parser().parse_args(["slots", "--merchant", "m", "--redis-url", "redis://h/0"])
    assert args.redis_cluster is False


def test_a_bad_boolean_variable_is_a_usage_error(monkeypatch, capsys) -> None:
    monkeypatch.setenv("LEASEBROKER_REDIS_CLUSTER", "maybe")
    assert run_main(["slots", "--merchant", "m", "--redis-url", "redis://h/0"]) == 2
    assert "--redis-cluster" in capsys.readouterr().err


SERVE = ["serve", "--port", "0", "--admin-port", "-1"]
STORE = ["slots", "--merchant", "m", "--redis-url", "redis://127.0.0.1:1/0"]
BAD_VALUES = [
    (SERVE, "--log-level", "LOUD"),
    (SERVE, "--port", "70000"),
    (SERVE, "--port", "-5"),
    (SERVE, "--port", "http"),
    (SERVE, "--admin-port", "-2"),
    (SERVE, "--workers", "0"),
    (SERVE, "--workers", "many"),
    (SERVE, "--event-loop", "trio"),
    (SERVE, "--sweep-interval", "soon"),
    (SERVE, "--default-capacity", "-1"),
    (SERVE, "--default-hold", "banana"),
    (SERVE, "--max-hold", "1x"),
    (SERVE, "--record-retention", "forever"),
    (SERVE, "--key-prefix", "a b"),
    (SERVE, "--redis-url", "http://127.0.0.1/0"),
    (SERVE, "--redis-url", "redis://127.0.0.1:99999/0"),
    (SERVE, "--redis-url", "redis://127.0.0.1:6379/zero"),
    (SERVE, "--redis-tls-ca", "/nonexistent.pem"),
    (SERVE, "--tls-cert", "/nonexistent.pem"),
    (SERVE, "--inventory", "/nonexistent.json"),
    (STORE, "--json", None),  # a flag: no bad value; the store is refused below
    (["lease", "create", "--merchant", "m", "--service", "s", "--start",
      "2026-12-01T10:00:00Z", "--duration", "30m", "--client-reference", "r"],
     "--timeout", "-1"),
    (["slots", "--merchant", "m", "--redis-url", "redis://h/0"], "--day", "tomorrow"),
    (["events", "--merchant", "m", "--redis-url", "redis://h/0"], "--since", "x"),
    (["events", "--merchant", "m", "--redis-url", "redis://h/0"], "--count", "-1"),
    (["extend", "l.x", "--redis-url", "redis://h/0"], "--by", "0s"),
    (["prune", "--redis-url", "redis://h/0"], "--older-than", "old"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [b for b in BAD_VALUES if b[2] is not None],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_each_malformed_value_is_a_usage_error(command, flag, value, capsys) -> None:
    assert run_main([*command, flag, value]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip(), "a usage error says what is wrong"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LOG_LEVEL", "LOUD"), ("PORT", "70000"), ("WORKERS", "0"), ("REDIS_URL", "ftp://x"),
     ("DEFAULT_HOLD", "banana"), ("REDIS_CLUSTER", "2"), ("EVENT_LOOP", "gevent")],
)  # fmt: skip
def test_each_malformed_variable_is_a_usage_error(variable, value) -> None:
    from support import clean_env

    # No flags: a flag would win over the variable (every value here is refused).
    result = run_cli(["serve"], env=clean_env(**{f"LEASEBROKER_{variable}": value}))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "usage:" in result.stderr


def test_reflection_v1_and_v1alpha_are_served(broker) -> None:
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from leasebroker.wire.server import start_server

    running = start_server(broker, "127.0.0.1", 0, workers=2)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            for version in ("v1", "v1alpha"):
                method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
                call = channel.stream_stream(
                    method,
                    request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                    response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
                )
                requests = [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="grpc.reflection.v1.ServerReflection"
                    ),
                ]
                listed, described = list(call(iter(requests), timeout=10))
                names = {s.name for s in listed.list_services_response.service}
                assert "ext.maps.booking.partner.v0.BookingService" in names
                assert {"grpc.reflection.v1.ServerReflection",
                        "grpc.reflection.v1alpha.ServerReflection"} <= names  # fmt: skip
                proto = descriptor_pb2.FileDescriptorProto.FromString(
                    described.file_descriptor_response.file_descriptor_proto[0]
                )
                assert proto.package == "grpc.reflection.v1"
            assert reflection_pb2_grpc  # the v1alpha stub module is importable
    finally:
        running.stop(grace=None)


def test_the_wheel_ships_py_typed_and_the_license(tmp_path) -> None:
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    license_text = (root / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0" in license_text
    assert re.search(r'^license = "Apache-2.0"', (root / "pyproject.toml").read_text(), re.M)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
         str(tmp_path), str(root)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("leasebroker-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "leasebroker/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith("/LICENSE") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
