"""The deciding settings, stored once per key prefix so that processes cannot disagree.

Every script takes the default capacity, holds and retention as arguments, so two
processes started with different values would decide differently about the same
slot. The first broker process on a prefix stores its settings under
``<prefix>:settings`` (a JSON string, written with SET NX so two first starts cannot
both win); later ones take the stored values, and ``leasebroker config set`` changes
them for every process (a running ``serve`` reloads them every few seconds).
"""

from __future__ import annotations

import json
import logging

from leasebroker.core.base import BrokerCore
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.settings import BrokerConfig

log = logging.getLogger(__name__)

# The BrokerConfig fields that decide; key_prefix is where they are stored.
DECIDING_FIELDS = (
    "default_capacity",
    "default_hold_ms",
    "max_hold_ms",
    "record_retention_ms",
    "events_retention_ms",
)


def settings_json(config: BrokerConfig) -> str:
    """The deciding settings as stored: compact JSON with sorted keys."""
    values = {name: getattr(config, name) for name in DECIDING_FIELDS}
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def differences(
    config: BrokerConfig,
    other: BrokerConfig,
    fields: set[str],
    labels: tuple[str, str] = ("given", "stored"),
) -> list[str]:
    """``name: ours (given) vs theirs (stored)`` for each of ``fields`` whose values
    differ; ``labels`` names the two sides."""
    ours, theirs = labels
    return [
        f"{name}: {getattr(config, name)} ({ours}) vs {getattr(other, name)} ({theirs})"
        for name in DECIDING_FIELDS
        if name in fields and getattr(config, name) != getattr(other, name)
    ]


class SettingsOps(BrokerCore):
    """Reading, storing and reloading the settings stored under the key prefix."""

    def stored_settings(self) -> BrokerConfig | None:
        """The settings stored under this prefix (None: none stored yet)."""
        raw = self._read(self.client.get, self.keys.settings())
        if raw is None:
            return None
        try:
            values = json.loads(raw)
            if not isinstance(values, dict):
                raise ValueError("not a JSON object")
            unknown = set(values) - set(DECIDING_FIELDS)
            if unknown:
                raise ValueError(f"unknown settings {sorted(unknown)}")
            return BrokerConfig(key_prefix=self.config.key_prefix, **values)
        except (ValueError, TypeError) as exc:
            raise BrokerError(
                Reason.INTERNAL,
                f"the settings stored at {self.keys.settings()} are not valid ({exc}); "
                "replace them with `leasebroker config set`",
            ) from exc

    def settle_settings(self, given: BrokerConfig, *, store: bool) -> BrokerConfig | None:
        """The settings every process on this prefix uses: the stored ones; if none are
        stored, ``given`` (stored first when ``store``, SET NX: the first start wins).
        Returns None when nothing is stored and ``store`` is false."""
        stored = self.stored_settings()
        if stored is None and store:
            key, value = self.keys.settings(), settings_json(given)
            self._read(lambda: self.client.set(key, value, nx=True))
            stored = self.stored_settings()
        return stored

    def replace_settings(self, config: BrokerConfig) -> None:
        """Store ``config``'s deciding settings for every process (config set)."""
        self._read(self.client.set, self.keys.settings(), settings_json(config))

    def reload_settings(self) -> bool:
        """Take the stored settings if they changed (a running serve calls this every
        few seconds); True when they did."""
        stored = self.stored_settings()
        if stored is None or stored == self.config:
            return False
        log.info(
            "settings changed by leasebroker config set: %s",
            ", ".join(differences(stored, self.config, set(DECIDING_FIELDS), ("now", "before"))),
        )
        self.config = stored
        return True
