"""Feed bytes read as a stream (leasebroker.wire.feed_stream) give exactly what json.loads
of the whole document gave: the same feed and metadata, or the same FeedError."""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import json
from typing import Any

import pytest
import test_feed
import test_feed_metadata
from test_feed import entry, feed

from leasebroker.wire import feed as feed_module
from leasebroker.wire import feed_stream
from leasebroker.wire.feed import FeedError, decode_feed

_WHOLE = feed_module._decode_whole


def _outcome(decode, data: bytes) -> Any:
    try:
        parsed = decode(data, "the feed")
    except FeedError as exc:
        return "FeedError", str(exc)
    return dict(parsed), parsed.metadata, parsed.whole


def _documents_of_the_feed_tests() -> list[Any]:
    """Every document test_feed.py and test_feed_metadata.py hand to parse_feed, from
    their tests that need no fixtures, with every parametrized value."""
    documents: list[Any] = []
    real = feed_module.parse_feed

    def recording(document: Any, **kwargs: Any) -> Any:
        documents.append(copy.deepcopy(document))
        return real(document, **kwargs)

    for module in (test_feed, test_feed_metadata):
        saved = module.parse_feed
        module.parse_feed = recording
        try:
            for name, test in vars(module).items():
                if name.startswith("test_") and callable(test):
                    _run_all_cases(test)
        finally:
            module.parse_feed = saved
    return documents


def _run_all_cases(test: Any) -> None:
    names, choices = [], []
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "parametrize":
            argnames = mark.args[0]
            argnames = argnames.split(",") if isinstance(argnames, str) else list(argnames)
            names.append([n.strip() for n in argnames])
            choices.append([v if len(argnames) > 1 else (v,) for v in mark.args[1]])
    if set(inspect.signature(test).parameters) != {n for group in names for n in group}:
        return  # needs fixtures
    for combination in itertools.product(*choices):
        kwargs = {}
        for group, values in zip(names, combination, strict=True):
            kwargs.update(zip(group, values, strict=True))
        with contextlib.suppress(Exception):  # only the documents are wanted here
            test(**kwargs)


_FEED_TEST_DOCUMENTS = _documents_of_the_feed_tests()


def _encodings(document: Any) -> list[bytes]:
    return [
        json.dumps(document).encode(),
        json.dumps(document, ensure_ascii=False, indent=2).encode(),
    ]


def test_the_feed_tests_hand_over_many_documents_and_most_are_streamed():
    assert len(_FEED_TEST_DOCUMENTS) > 100
    streamed = 0
    for document in _FEED_TEST_DOCUMENTS:
        with contextlib.suppress(Exception):  # left to json.loads
            feed_stream.skeleton(json.dumps(document).encode())
            streamed += 1
    assert streamed > 0.9 * len(_FEED_TEST_DOCUMENTS)


@pytest.mark.parametrize("index", range(len(_FEED_TEST_DOCUMENTS)))
def test_streamed_is_whole_for_the_feed_tests_documents(index):
    for data in _encodings(_FEED_TEST_DOCUMENTS[index]):
        assert _outcome(decode_feed, data) == _outcome(_WHOLE, data)


def _bad(n: int) -> list[dict[str, Any]]:
    return [entry(service_id=f"s{i}", start_sec="x") for i in range(n)]


RAW = {
    "duplicate-groups-key": b'{"service_availability": [{"availability": [{"x": 1}]}],'
    b' "service_availability": [{"availability": [%s]}]}' % json.dumps(entry()).encode(),
    "duplicate-availability": b'{"service_availability": [{"availability": [%s],'
    b' "availability": [%s, %s]}]}'
    % (json.dumps(entry()).encode(), json.dumps(entry()).encode(), json.dumps(entry()).encode()),
    "duplicate-key-in-entry": b'[{"spots_open": "x", %s}]' % json.dumps(entry()).encode()[1:-1],
    "form-feed": b"[\x0c%s]" % json.dumps(entry()).encode(),
    "vertical-tab": b"[\x0b%s]" % json.dumps(entry()).encode(),
    "lone-surrogate": b'[{"merchant_id": "\\ud800"}]',
    "surrogate-pair": b"[%s]" % json.dumps(entry(availability_tag="\U0001f600")).encode(),
    "nan": b'[{"spots_open": NaN}]',
    "huge-float": b'[{"spots_open": 1e400}]',
    "big-integer": b'[{"spots_open": 123456789012345678901234567890}]',
    "trailing-garbage": b"[%s] x" % json.dumps(entry()).encode(),
    "bom": b"\xef\xbb\xbf[%s]" % json.dumps(entry()).encode(),
    "deep-entry": b"[" + b'{"a":' * 40 + b"1" + b"}" * 40 + b"]",
    "long-key": b'[{"%s": 1}]' % (b"k" * 100),
    "entry-16-deep": b"[" + b'{"a":' * 15 + b"1" + b"}" * 15 + b"]",
    "deepish-array": b"[" * 500 + b"]" * 500,
    "deep-metadata": b'{"metadata": ' + b"[" * 60 + b"]" * 60 + b', "service_availability": []}',
}
DOCUMENTS = {
    "camel-case": {"serviceAvailability": [{"availability": [entry()]}]},
    "both-spellings": {
        "service_availability": [{"availability": [entry()]}],
        "serviceAvailability": [{"availability": [entry(service_id="b")]}],
    },
    "null-snake-camel-list": {
        "service_availability": None,
        "serviceAvailability": [{"availability": [entry()]}],
    },
    "metadata-last": {"service_availability": [{"availability": [entry()]}], "metadata": {"x": 1}},
    "restricted-after-entries": {
        "service_availability": [
            {"availability": _bad(2), "merchant_id_restrict": "m"},
            {"availability": [entry()]},
        ]
    },
    "dotted-key": {
        "service_availability.item.availability": [entry()],
        "service_availability": [{"availability": [entry(service_id="b")]}],
    },
    "groups-as-object": {"service_availability": {"item": {"availability": [entry()]}}},
    "item-key": {"item": [entry()], "service_availability": [{"availability": [entry()]}]},
    "cap": feed(_bad(25)),
    "cap-over-groups": feed(_bad(3), [entry(), entry()], _bad(30), [5]),
    "unknown-group-key": feed([entry()], colour="red"),
    "entries-of-every-kind": [entry(), None, 1, "x", [entry()], {"a": [1, {"b": 2.5}]}, entry()],
    "floats": [entry(spots_open=2.0), entry(start_sec=1e3), entry(duration_sec=-0.0)],
}


@pytest.mark.parametrize("name", sorted(RAW))
def test_streamed_is_whole_for_odd_bytes(name):
    data = RAW[name]
    assert _outcome(decode_feed, data) == _outcome(_WHOLE, data)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_streamed_is_whole_for_odd_documents(name):
    for data in _encodings(DOCUMENTS[name]):
        assert _outcome(decode_feed, data) == _outcome(_WHOLE, data)


def test_a_plain_feed_is_streamed():
    data = json.dumps(feed([entry(), entry(service_id="b")], [entry(service_id="c")])).encode()
    document, prefix = feed_stream.skeleton(data)
    assert prefix == "service_availability.item.availability.item"
    assert document["service_availability"][1]["availability"] == [2]
