"""The ``leasebroker`` command: parsing, ``serve``, the operator commands and their tables."""

from leasebroker.cli.parser import main

__all__ = ["main"]
