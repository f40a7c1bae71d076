"""Generate the Python protobuf and gRPC modules from protos/.

Usage: python scripts/gen_protos.py [OUTPUT_ROOT]

Without OUTPUT_ROOT the modules are written next to the package sources
(leasebroker/api/...), which is what gets committed. tests/test_generated_code.py
generates into a temporary folder and fails when the committed files differ, so
run this after every change to a .proto file (with the pinned grpcio-tools from
the `dev` extra, so the output is byte-for-byte reproducible).
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[Path]:
    """Every .proto source, relative to protos/ (their import path)."""
    return sorted(p.relative_to(PROTO_ROOT) for p in PROTO_ROOT.rglob("*.proto"))


def generate(out_root: Path) -> None:
    """Run protoc on every source; raise on the first compiler error."""
    well_known = resources.files("grpc_tools") / "_proto"
    for proto in proto_files():
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            str(proto),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
