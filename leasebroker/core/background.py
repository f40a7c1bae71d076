"""Periodic background work inside ``serve``: a daemon thread calling one function, and
the log of an outage that says so once, not once a second."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from leasebroker.core.errors import BrokerError

log = logging.getLogger(__name__)

# While an outage lasts, one reminder line this often.
REMIND_EVERY_S = 300.0


class OutageLog:
    """Logs the first failure of an outage, counts the rest (with a reminder every
    ``remind_every_s`` seconds), and one line when it is over, with the count."""

    def __init__(
        self, logger: logging.Logger, what: str, remind_every_s: float = REMIND_EVERY_S
    ) -> None:
        self.logger = logger
        self.what = what
        self.remind_every_s = remind_every_s
        self.failures = 0
        self._since = self._reminded = 0.0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, problem: str, *, exc_info: bool = False) -> None:
        now = time.monotonic()
        self.failures += 1
        if self.failures == 1:
            self._since = self._reminded = now
            self.logger.warning("%s %s", self.what, problem, exc_info=exc_info)
        elif now - self._reminded >= self.remind_every_s:
            self._reminded = now
            self.logger.warning(
                "%s still failing after %.0f s (%d failures so far); the last: %s",
                self.what,
                now - self._since,
                self.failures,
                problem,
            )

    def recovered(self, how: str = "works again") -> None:
        if not self.failures:
            return
        self.logger.warning(
            "%s %s after %.0f s (%d failures)",
            self.what,
            how,
            time.monotonic() - self._since,
            self.failures,
        )
        self.failures = 0


class Periodic(threading.Thread):
    """Calls ``task`` every ``interval_s`` seconds until :meth:`stop`.

    A failing call is logged and the next one runs on schedule: background
    work must never take the server down. An outage is logged once, when it
    starts, and once when it ends (:class:`OutageLog`).
    """

    def __init__(self, name: str, task: Callable[[], object], interval_s: float) -> None:
        super().__init__(name=name, daemon=True)
        self.task = task
        self.interval_s = interval_s
        self.outage = OutageLog(log, name)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                self.task()
            except BrokerError as error:
                self.outage.failed(f"failed: {error}")
            except Exception as error:
                self.outage.failed(f"failed: {error!r}", exc_info=True)
            else:
                self.outage.recovered()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
