"""Periodic background work inside ``serve``: a daemon thread calling one function."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from leasebroker.core.errors import BrokerError

log = logging.getLogger(__name__)


class Periodic(threading.Thread):
    """Calls ``task`` every ``interval_s`` seconds until :meth:`stop`.

    A failing call is logged and the next one runs on schedule: background
    work must never take the server down.
    """

    def __init__(self, name: str, task: Callable[[], object], interval_s: float) -> None:
        super().__init__(name=name, daemon=True)
        self.task = task
        self.interval_s = interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                self.task()
            except BrokerError as error:
                log.warning("%s failed: %s", self.name, error)
            except Exception:
                log.exception("%s failed", self.name)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
