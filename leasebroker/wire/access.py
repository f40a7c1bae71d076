"""What each RPC leaves behind: one access-log line, its metrics, its span's attributes.

:func:`observed` is called by :func:`leasebroker.wire.errors.rpc` once per RPC, with the
request, the reply (or the BrokerError) and the time it took. The access line goes to
the ``leasebroker.access`` logger at INFO (``serve --access-log off`` silences it) and
names the service, method, gRPC code, reason, duration, merchant id and the lease and
booking ids: the only request fields it ever reads are ``merchant_id``, ``lease_id`` and
``booking_id`` (on the message or one level down), so never a client's name, telephone,
email or address.
"""

from __future__ import annotations

import logging
from typing import Any

from leasebroker.core.keys import IdKind, parse_public_id
from leasebroker.wire import metrics, tracing

access_log = logging.getLogger("leasebroker.access")

ID_FIELDS = ("merchant_id", "lease_id", "booking_id")
# Longest id text an access line repeats; longer ones are cut (they are invalid anyway).
MAX_ID_CHARS = 120


def _printable(value: str) -> str:
    """An id as it may appear in a log line: cut, and with no control characters."""
    value = value[:MAX_ID_CHARS]
    return value if value.isprintable() and " " not in value else repr(value)


def call_ids(*messages: Any) -> dict[str, str]:
    """``merchant_id``, ``lease_id`` and ``booking_id`` found on the messages or on their
    singular message fields (the first found wins; empty ones are skipped). A missing
    merchant id is read from a lease or booking id."""
    found: dict[str, str] = {}
    for message in messages:
        if message is None or not hasattr(message, "ListFields"):
            continue
        for descriptor, value in message.ListFields():
            if descriptor.name in ID_FIELDS and isinstance(value, str):
                found.setdefault(descriptor.name, value)
            elif descriptor.message_type is not None and not _repeated(descriptor):
                for name in ID_FIELDS:
                    inner = getattr(value, name, None)
                    if isinstance(inner, str) and inner:
                        found.setdefault(name, inner)
    if not found.get("merchant_id"):
        for name, kind in (("lease_id", IdKind.LEASE), ("booking_id", IdKind.BOOKING)):
            parsed = parse_public_id(found.get(name, ""), kind)
            if parsed is not None:
                found["merchant_id"] = parsed.merchant_id
                break
    return {name: _printable(found[name]) for name in ID_FIELDS if found.get(name)}


def _repeated(descriptor: Any) -> bool:
    is_repeated = getattr(descriptor, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return descriptor.label == descriptor.LABEL_REPEATED


def observed(
    service: str, method: str, request: Any, reply: Any, code: str, reason: str, seconds: float
) -> None:
    """Count, log and annotate one finished RPC; never raises."""
    try:
        metrics.record_rpc(service, method, code, reason, seconds)
        ids = call_ids(request, reply)
        tracing.annotate(method, reason, ids.get("merchant_id", ""))
        if access_log.isEnabledFor(logging.INFO):
            duration_ms = round(seconds * 1000, 3)
            shown = " ".join(f"{k}={v}" for k, v in ids.items())
            access_log.info(
                "%s.%s %s %s %.1fms%s",
                service,
                method,
                code,
                reason,
                duration_ms,
                f" {shown}" if shown else "",
                extra={
                    "service": service,
                    "method": method,
                    "code": code,
                    "reason": reason,
                    "duration_ms": duration_ms,
                    **ids,
                },
            )
    except Exception:  # never let the bookkeeping fail a call
        logging.getLogger(__name__).exception("could not record %s.%s", service, method)
