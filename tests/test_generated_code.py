"""The committed protobuf/gRPC modules are exactly what scripts/gen_protos.py generates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATED_DIR = "leasebroker/api"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    load_generator().generate(out)
    return out


def relative_files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in (root / GENERATED_DIR).rglob("*") if p.is_file()}


def test_generator_produces_modules(generated):
    names = {p.name for p in relative_files(generated)}
    assert any(n.endswith("_pb2.py") for n in names)
    assert any(n.endswith("_pb2_grpc.py") for n in names)
    assert any(n.endswith("_pb2.pyi") for n in names)


def test_generated_files_match_the_committed_ones(generated):
    for relative in sorted(relative_files(generated)):
        committed = ROOT / relative
        assert committed.is_file(), f"{relative} is generated but not committed"
        assert committed.read_bytes() == (generated / relative).read_bytes(), (
            f"{relative} differs from the generator's output: run scripts/gen_protos.py"
        )


def test_every_committed_generated_file_has_a_source(generated):
    committed = {p.relative_to(ROOT) for p in (ROOT / GENERATED_DIR).rglob("*_pb2*") if p.is_file()}
    assert committed, "no committed generated modules found"
    orphans = committed - relative_files(generated)
    assert not orphans, f"committed but not generated from any .proto: {sorted(map(str, orphans))}"
