"""Time units and their text forms: the one place every module takes them from.

Instants are integers: nanoseconds since the Unix epoch (UTC) where a protobuf
Timestamp's precision must survive (slot starts), milliseconds where Redis keeps
them (lease expiry, record times). Durations follow the same rule.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import date, datetime, timezone

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
MS_PER_S = 1_000
MS_PER_MINUTE = 60 * MS_PER_S
MS_PER_HOUR = 60 * MS_PER_MINUTE
MS_PER_DAY = 24 * MS_PER_HOUR
S_PER_DAY = 86_400
DAY_NS = S_PER_DAY * NS_PER_S

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DURATION_RE = re.compile(r"\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?\s*")
_UNIT_MS = {"ms": 1, "s": MS_PER_S, "m": MS_PER_MINUTE, "h": MS_PER_HOUR, "d": MS_PER_DAY}
# Units of human_ns, largest first, in seconds.
_HUMAN_UNITS = (("d", S_PER_DAY), ("h", 3_600), ("m", 60), ("s", 1))


def parse_duration_ms(text: str) -> int:
    """``"500ms"``, ``"90s"``, ``"10m"``, ``"1.5h"``, ``"2d"``; a bare number is seconds."""
    match = _DURATION_RE.fullmatch(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (examples: 500ms, 90s, 10m, 1h)")
    return round(float(match["num"]) * _UNIT_MS[match["unit"] or "s"])


def floor_ms(epoch_ns: int) -> int:
    """Nanoseconds to whole milliseconds, rounding down (also before 1970)."""
    return epoch_ns // NS_PER_MS


def fraction_text(nanos: int) -> str:
    """``.5`` for 500,000,000 ns; nothing for 0: the shortest exact fraction of a second."""
    return f".{nanos:09d}".rstrip("0") if nanos else ""


def span_text(duration_ns: int) -> str:
    """``1800s``, or ``1800.5s`` when the duration has a fraction of a second."""
    seconds, nanos = divmod(duration_ns, NS_PER_S)
    return f"{seconds}{fraction_text(nanos)}s"


def utc_clock(epoch_s: int, date_sep: str = "-", time_sep: str = ":") -> str:
    """``2026-12-01T10:00:00`` (with the separators given): the UTC date and time of a
    second since the epoch, as strftime's ``%Y``, ``%m``, ``%d``, ``%H``, ``%M`` and
    ``%S`` print them, the year unpadded.

    Not strftime itself: slot key names are made on the server's serving thread, and
    there ``datetime.strftime`` cost ~20 us of server CPU per call against ~1.4 us timed
    alone (docs/architecture.md, "Why the BookingService is a grpc.aio server"). One
    ``%`` over the fields of ``time.gmtime`` takes half the time of an f-string with a
    format spec per field (~1.3 against ~2.6 us timed alone).
    """
    return _clock_format(date_sep, time_sep) % time.gmtime(epoch_s)[:6]


@functools.cache
def _clock_format(date_sep: str, time_sep: str) -> str:
    d, t = date_sep.replace("%", "%%"), time_sep.replace("%", "%%")
    return f"%d{d}%02d{d}%02dT%02d{t}%02d{t}%02d"


def utc_text(epoch_ns: int) -> str:
    """``2026-12-01T10:00:00Z``, with the fraction of a second only when there is one."""
    seconds, nanos = divmod(epoch_ns, NS_PER_S)
    return utc_clock(seconds) + fraction_text(nanos) + "Z"


def iso_ms(epoch_ms: int | None) -> str | None:
    """``2026-12-01T10:00:00.250Z`` (``...:00Z`` on a whole second) for milliseconds
    since the epoch; None stays None."""
    if epoch_ms is None:
        return None
    seconds, millis = divmod(epoch_ms, MS_PER_S)
    text = utc_text(seconds * NS_PER_S)
    return f"{text[:-1]}.{millis:03d}Z" if millis else text


def human_ns(span_ns: int) -> str:
    """``30m``, ``1h30m``, ``45s``; spans with a fraction of a second as ``1.5s``."""
    if span_ns % NS_PER_S or span_ns <= 0:
        return span_text(span_ns) if span_ns >= 0 else f"{span_ns}ns"
    seconds = span_ns // NS_PER_S
    parts = []
    for unit, size in _HUMAN_UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def human_ms(span_ms: int) -> str:
    """A millisecond span for people: ``250ms`` below a second, else whole seconds up."""
    if span_ms < MS_PER_S:
        return f"{span_ms}ms"
    return human_ns(span_ms // MS_PER_S * NS_PER_S)


def instant_ns(value: datetime) -> int:
    """An aware datetime as nanoseconds since the epoch, exactly (no float rounding)."""
    delta = value - _EPOCH
    return (delta.days * S_PER_DAY + delta.seconds) * NS_PER_S + delta.microseconds * 1_000


def day_start_ns(day: date) -> int:
    """Midnight UTC at the start of ``day``, in nanoseconds since the epoch."""
    return instant_ns(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))


def utc_day(epoch_ms: int) -> date:
    """The UTC calendar day an instant (ms since the epoch) falls on."""
    return datetime.fromtimestamp(epoch_ms // MS_PER_S, tz=timezone.utc).date()
