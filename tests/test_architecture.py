"""The house rules: rooms whose imports point one way, small modules, a pinned public API."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import leasebroker

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "leasebroker"
MAX_MODULE_LINES = 400

# What `from leasebroker import ...` offers library users; changing it is an API change.
PUBLIC_API = {
    "AsyncBroker",
    "Booking",
    "BookingRequest",
    "BookingStatus",
    "BrokerConfig",
    "BrokerError",
    "CapacitySource",
    "FieldViolation",
    "InventorySlot",
    "InventoryState",
    "Lease",
    "LeaseBroker",
    "LeaseRequest",
    "LeaseState",
    "LeaseView",
    "Reason",
    "SlotId",
    "SlotStatus",
    "__version__",
}


def test_import_contracts_hold():
    """cli -> wire -> core, no gRPC or protobuf in the core, Redis only from the core,
    and no cycles (the contracts in pyproject.toml). In a subprocess: import-linter
    configures logging, which would switch off the loggers of the tests after it."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename='pyproject.toml'))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def _modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "_pb2" not in p.name]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_400_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines: split it by job"


def test_the_rooms_are_packages():
    for room in ("core", "wire", "cli"):
        assert (PACKAGE / room / "__init__.py").is_file()


def test_public_api_is_importable_from_the_top_package():
    from leasebroker import BrokerConfig, BrokerError, LeaseBroker, LeaseRequest, Reason, SlotId

    assert set(leasebroker.__all__) == PUBLIC_API
    for name in PUBLIC_API:
        assert getattr(leasebroker, name) is not None
    assert LeaseBroker.__module__ == "leasebroker.core.broker"
    assert BrokerConfig().default_capacity == 1
    assert issubclass(BrokerError, Exception)
    assert LeaseRequest.__module__ == SlotId.__module__.replace("keys", "model")
    assert Reason.SLOT_FULL.value == "SLOT_FULL"


def test_version_is_the_installed_one():
    assert leasebroker.__version__ == importlib.metadata.version("leasebroker")


def test_the_package_is_typed():
    assert (PACKAGE / "py.typed").is_file()


def test_every_package_ships():
    """setuptools is given the package list: a new folder must be in it, or the wheel
    silently lacks it (the editable install used by the tests would not notice)."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in PACKAGE.rglob("__init__.py")}
    assert found == listed
