"""Envelope encode/decode, each next to raw msgpack of the same fields.

The envelope adds validation (nesting depth, types, size bound, version) to
plain msgpack; the ``track_*_ratio`` figures say what that costs (target:
at most 2x raw msgpack). No ``setup`` methods here on purpose: with setup
hooks asv would time one call per sample, too coarse for microseconds.
"""

import timeit

import msgpack

from taskqueue.serialization import Envelope, decode, encode

MAX_BYTES = 1_048_576
ARGS = (42, "user@example.com", 3.5)
KWARGS = {"subject": "hello", "retries": 3, "tags": ["a", "b"]}
ENVELOPE = Envelope("bench.email", ARGS, KWARGS, {})
#: The same fields as the envelope puts on the wire.
RAW = {"v": 1, "n": "bench.email", "a": list(ARGS), "k": KWARGS}
ENCODED = encode(ENVELOPE, max_bytes=MAX_BYTES)
assert msgpack.packb(RAW, use_bin_type=True) == ENCODED, "the baseline must encode the same bytes"


def _best(fn, number=20000, repeat=5):
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


class Serialization:
    number = 2000  # explicit, so that even --quick times many calls

    def time_encode(self):
        encode(ENVELOPE, max_bytes=MAX_BYTES)

    def time_encode_raw_msgpack(self):
        msgpack.packb(RAW, use_bin_type=True)

    def time_decode(self):
        decode(ENCODED)

    def time_decode_raw_msgpack(self):
        msgpack.unpackb(ENCODED, raw=False)


class SerializationOverhead:
    """Envelope time divided by raw msgpack time, measured side by side."""

    unit = "ratio"
    timeout = 60

    def track_encode_ratio(self):
        return _best(lambda: encode(ENVELOPE, max_bytes=MAX_BYTES)) / _best(
            lambda: msgpack.packb(RAW, use_bin_type=True)
        )

    def track_decode_ratio(self):
        return _best(lambda: decode(ENCODED)) / _best(lambda: msgpack.unpackb(ENCODED, raw=False))
