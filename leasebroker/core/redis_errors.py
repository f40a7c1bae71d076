"""Which Redis failures mean "not now, retry" and which mean a bug: one classification.

A failure that means "not now" becomes STORE_UNAVAILABLE (gRPC UNAVAILABLE), which a
client may retry safely: every script is atomic, and every mutation is idempotent by
its reference or id, so a retry of a call that did get through returns its result.
Anything else is INTERNAL (logged with its traceback).
"""

from __future__ import annotations

import redis.exceptions

# What redis-py raises for a connection that broke, timed out or is being failed over.
_UNAVAILABLE_CLASSES = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica after failover, before clients move on
    redis.exceptions.ClusterDownError,  # includes MasterDownError
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.OutOfMemoryError,  # maxmemory reached under noeviction: retry later
)

# Error replies that say "not now", by their first word. redis-py turns some into the
# classes above and leaves the rest as a plain ResponseError starting with the code.
UNAVAILABLE_CODES = frozenset(
    {
        "BUSY",  # another script has run longer than busy-reply-threshold (5 s)
        "LOADING",  # the dataset is being loaded after a restart
        "MISCONF",  # writes refused: a background save failed
        "READONLY",  # a replica
        "NOREPLICAS",  # min-replicas-to-write not met
        "MASTERDOWN",  # a replica that lost its primary (replica-serve-stale-data no)
        "CLUSTERDOWN",
        "TRYAGAIN",
        "OOM",
    }
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether a Redis failure means "not now": safe to retry, never INTERNAL."""
    if isinstance(exc, _UNAVAILABLE_CLASSES):
        return True
    if not isinstance(exc, redis.exceptions.ResponseError):
        return False
    words = str(exc).split(maxsplit=1)
    if words and words[0] in UNAVAILABLE_CODES:
        return True
    # Redis 6.2 wraps an error raised inside a script: "ERR Error running script ...:
    # -OOM command not allowed ...". Redis 7 passes the code through as the first word.
    return str(exc).startswith("ERR Error running script") and any(
        f"-{code} " in str(exc) for code in UNAVAILABLE_CODES
    )
