"""``leasebroker config show`` and ``config set``: the deciding settings every process on
a key prefix uses (stored at ``<prefix>:settings``; see core/stored_settings.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

from leasebroker.cli.common import EXIT_OK, EXIT_USAGE, CliError, given_fields
from leasebroker.cli.options import events_retention_text
from leasebroker.cli.session import Session
from leasebroker.cli.tables import render_fields
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.stored_settings import DECIDING_FIELDS
from leasebroker.core.units import NS_PER_MS, human_ns


def _shown(config: BrokerConfig) -> tuple[dict[str, Any], str]:
    data = {name: getattr(config, name) for name in DECIDING_FIELDS}
    text = render_fields((name, _value_text(name, value)) for name, value in data.items())
    return data, text


def _value_text(name: str, value: int) -> str | int:
    if name == "events_retention_ms":
        return events_retention_text(value)
    return human_ns(value * NS_PER_MS) if name.endswith("_ms") else value


def config_show(session: Session) -> int:
    broker = session.broker
    stored = broker.stored_settings()
    where = broker.keys.settings()
    if stored is None:
        data, text = _shown(BrokerConfig(key_prefix=broker.config.key_prefix))
        session.show(
            {"stored": False, "key": where, "settings": data},
            f"no settings stored at {where} yet: the first `leasebroker serve` on this prefix "
            f"stores its own; the defaults are\n{text}",
        )
    else:
        data, text = _shown(stored)
        session.show({"stored": True, "key": where, "settings": data}, f"{where}\n{text}")
    return EXIT_OK


def config_set(session: Session) -> int:
    changes = {
        field: getattr(session.broker.config, field)
        for field in given_fields(session.args) - {"key_prefix"}
    }
    if not changes:
        raise CliError(
            "config set needs at least one setting, e.g. --default-capacity 2", EXIT_USAGE
        )
    broker = session.broker
    base = broker.stored_settings() or BrokerConfig(key_prefix=broker.config.key_prefix)
    try:
        new = dataclasses.replace(base, **changes)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    broker.replace_settings(new)
    data, text = _shown(new)
    session.show(
        {"stored": True, "key": broker.keys.settings(), "settings": data},
        f"{broker.keys.settings()} (running serve processes take it within seconds)\n{text}",
    )
    return EXIT_OK
