"""Kept only for test files still being written against it: import from ``support``.

Delete this module once nothing imports it (``grep -rn "from helpers" tests``).
"""

from __future__ import annotations

from support import (
    CLI,
    DURATION_S,
    START_NS,
    START_S,
    ServeProcess,
    StatusDetails,
    call_status,
    clean_env,
    create_request,
    future_lease,
    run_cli,
    status_details,
)

from leasebroker.core.units import NS_PER_S

__all__ = [
    "CLI",
    "DURATION_S",
    "NS_PER_S",
    "START_NS",
    "START_S",
    "ServeProcess",
    "StatusDetails",
    "call_status",
    "clean_env",
    "create_request",
    "future_lease",
    "run_cli",
    "status_details",
]
