"""``leasebroker inventory load`` (and ``serve --inventory``): read a feed once, check it
whole, then load it merchant by merchant, with progress on stderr for large feeds and
the result on stdout."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from leasebroker.cli.common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    CliError,
    config_from_args,
    open_broker,
    unreachable,
)
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.wire.feed import Feed, FeedError, check_complete, combine_shards, read_feed

# A progress line on stderr at most this often while a feed loads.
PROGRESS_EVERY_S = 2.0


def read_feed_files(paths: list[str], *, complete: bool = False) -> Feed:
    """The feed in ``paths`` (one file, or every shard of one feed); a bad, hostile or
    incomplete one is a usage error (exit 2)."""
    try:
        feed = combine_shards([(path, read_feed(path)) for path in paths])
        if complete:
            check_complete(feed, " ".join(paths))
    except FeedError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    return feed


class Progress:
    """``loading FEED: 500/2,000 merchants, 50,000 slots`` on stderr, at most every
    PROGRESS_EVERY_S seconds (nothing at all for a feed that loads faster)."""

    def __init__(self, path: str, merchants: int) -> None:
        self.path, self.merchants = path, merchants
        self._next = time.monotonic() + PROGRESS_EVERY_S

    def __call__(self, done: int, slots: int) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + PROGRESS_EVERY_S
        print(
            f"loading {self.path}: {done:,}/{self.merchants:,} merchants, {slots:,} slots",
            file=sys.stderr,
            flush=True,
        )


def load_feed(
    broker: LeaseBroker,
    feed: Feed,
    path: str,
    *,
    complete: bool = False,
    report: Callable[[str], object] = print,
    warn: Callable[[str], object] = lambda text: print(text, file=sys.stderr),
    skip_outdated: bool = False,
) -> int:
    """Replace each merchant's inventory with its slots in the feed; returns the slot count.

    ``complete``: the feed lists every merchant, so any other merchant the broker
    knows is left offering nothing (each named on stderr). A feed older than the newest
    loaded is refused (``skip_outdated``: reported and skipped). ``report`` gets the
    result line.
    """
    meta = feed.metadata
    try:
        total, withdrawn = broker.load_inventories(
            feed,
            complete=complete,
            generation=meta.generation_timestamp,
            nonce=meta.nonce,
            progress=Progress(path, len(feed)),
        )
    except BrokerError as exc:
        if exc.reason is Reason.STORE_UNAVAILABLE:
            raise unreachable("the lease store", exc) from exc
        if exc.reason is Reason.FEED_OUTDATED and skip_outdated:
            # serve --inventory after a newer inventory load: starting with the newer
            # inventory beats refusing to start on every restart.
            warn(f"not loading {path}: {exc.message}")
            return 0
        code = EXIT_USAGE if exc.reason is Reason.INVALID_FIELD else EXIT_REFUSED
        raise CliError(f"{path}: {exc}", code) from exc
    for merchant_id in withdrawn:
        warn(f"merchant {merchant_id!r} is not in the complete feed: it offers nothing now")
    report(f"loaded {total} slots for {len(feed)} merchants from {path}")
    return total


def load_inventory(args: argparse.Namespace) -> int:
    if not args.redis_url:
        raise CliError(
            "inventory load needs --redis-url (or LEASEBROKER_REDIS_URL); the embedded store "
            "lives inside one serve process: use `leasebroker serve --inventory FEED.json`",
            EXIT_USAGE,
        )
    config_from_args(args)
    # Parse (once) before connecting: a bad feed is reported without touching the store.
    feed = read_feed_files(args.feed, complete=args.complete)
    store, broker = open_broker(args, pool_size=2)
    try:
        load_feed(broker, feed, " ".join(args.feed), complete=args.complete)
    finally:
        store.close()
    return EXIT_OK
