"""Hostile input: whatever bytes reach a worker, they end in the dead-letter
queue or are refused with a clear reason. Never a crash, a hang, or code run.

Two levels: properties of the envelope decoder (pure, many examples), and
arbitrary bytes written straight into every structure a worker reads (queue
lists, task hashes, the schedule and lease sets) on the real server, with a
real worker pool serving them.
"""

from __future__ import annotations

import logging
import time
import uuid

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.errors import SerializationError
from taskqueue.serialization import MAX_DEPTH, Envelope, decode

from ..conftest import make_settings

KNOWN_REASONS = ("bad-payload:", "bad-signature:", "unknown-task:", "bad-arguments:", "bad-entry:")
STATUSES = {
    s.encode()
    for s in ("PENDING", "SCHEDULED", "RUNNING", "SUCCEEDED", "FAILED", "RETRYING", "DEAD", "CANCELLED")
}

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text() | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers(-(2**63), 2**63), inner, max_size=4)
    ),
    max_leaves=20,
)

envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 0, 2, "1", None]),
        "n": st.text(max_size=20) | st.integers(-(2**31), 2**31) | st.none(),
        "a": msgpack_values,
        "k": msgpack_values,
        "o": st.dictionaries(st.sampled_from(["timeout", "max_retries", "x"]), msgpack_values, max_size=3),
    },
)


def _decodes_or_refuses(data: bytes) -> None:
    started = time.perf_counter()
    try:
        envelope = decode(data)
    except SerializationError as exc:
        assert str(exc).strip(), "a refusal must say why"
        assert not str(exc).endswith(": "), f"empty reason: {exc!r}"
    else:
        assert isinstance(envelope, Envelope) and isinstance(envelope.name, str) and envelope.name
    assert time.perf_counter() - started < 1.0


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_decode_to_an_envelope_or_a_clear_refusal(data: bytes) -> None:
    _decodes_or_refuses(data)


@settings(max_examples=500, deadline=None)
@given(envelope_like | msgpack_values)
def test_any_msgpack_document_decodes_or_is_refused(document) -> None:
    _decodes_or_refuses(msgpack.packb(document, use_bin_type=True))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=127))
def test_msgpack_extension_types_are_refused_not_built(data: bytes, code: int) -> None:
    """Only the timestamp extension (-1, decoded by msgpack) is data we know; any other is refused."""
    ext = msgpack.ExtType(code, data)
    for body in (
        {"v": 1, "n": "t", "a": [ext]},
        {"v": 1, "n": "t", "a": [1, [2, {"x": ext}]]},  # nested
        {"v": 1, "n": "t", "k": {"x": ext}},
        {"v": 1, "n": "t", "k": {"x": [ext]}},
    ):
        with pytest.raises(SerializationError, match=f"extension type {code}"):
            decode(msgpack.packb(body, use_bin_type=True))
    timestamp = b"\x81\xa1v\x01" + bytes([0xC7, len(data), 0xFF]) + data  # {"v": 1, ...} then ext -1
    _decodes_or_refuses(timestamp)


def test_hostile_nesting_and_declared_sizes_are_refused_at_once() -> None:
    cases = {
        b"\x91" * 100_000 + b"\xc0": "not valid msgpack",  # 100,000 nested arrays
        b"\xdd\xff\xff\xff\xff": "not valid msgpack",  # an array that claims 4 billion items
        b"\xdb\xff\xff\xff\xff": "not valid msgpack",  # a string that claims 4 GiB
    }
    nested: list = []
    for _ in range(MAX_DEPTH + 5):
        nested = [nested]
    cases[msgpack.packb({"v": 1, "n": "t", "a": nested})] = f"deeper than {MAX_DEPTH} levels"
    for data, reason in cases.items():
        started = time.perf_counter()
        with pytest.raises(SerializationError, match=reason):
            decode(data)
        assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"max_retries": "many"}, "max_retries"),
    ],
)
def test_options_in_a_payload_are_checked(options, reason) -> None:
    with pytest.raises(SerializationError, match=reason):
        decode(msgpack.packb({"v": 1, "n": "t", "a": [], "o": options}))


# -- arbitrary bytes in every structure a worker reads ------------------------------------------
def hostile_task_fields() -> st.SearchStrategy[dict]:
    junk = st.binary(max_size=64)
    numberish = st.integers(min_value=-5, max_value=5).map(str).map(str.encode) | junk
    return st.fixed_dictionaries(
        {
            "payload": st.binary(max_size=256) | envelope_like.map(msgpack.packb),
            "status": st.just(b"PENDING") | junk,
        },
        optional={"sig": junk, "attempts": numberish, "max_retries": numberish, "name": junk, "queue": junk},
    )


hostile_entries = st.lists(
    st.one_of(
        st.tuples(
            st.just("raw"), st.sampled_from(["high", "default", "low"]), st.binary(min_size=1, max_size=80)
        ),
        st.tuples(st.just("task"), st.sampled_from(["high", "default", "low"]), hostile_task_fields()),
        st.tuples(st.just("task-id"), st.sampled_from(["default"]), st.binary(min_size=1, max_size=40)),
        st.tuples(st.just("scheduled"), st.just(""), st.binary(min_size=1, max_size=40)),
        st.tuples(st.just("lease"), st.just(""), st.binary(min_size=1, max_size=40)),
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture(params=["unsigned", "signed"])
def served_queue(request, redis_url, redis_client):
    keys = ("k-current", "k-old") if request.param == "signed" else ()
    # No grace for names no live worker serves: every hostile entry is decided in one pass.
    settings = make_settings(security={"signing_keys": keys}, workers={"unknown_task_grace": 0})
    q = TaskQueue(redis_url, settings=settings, registry=TaskRegistry())
    ran: list[str] = []

    @q.task(name="sentinel")
    def sentinel(label):
        ran.append(label)
        return label

    q.start_workers(1)
    yield q, sentinel, ran
    q.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(entries=hostile_entries)
def test_arbitrary_bytes_in_queue_structures_end_dead_or_refused(served_queue, entries, caplog) -> None:
    q, sentinel, ran = served_queue
    client, keys = q.broker.client, q.broker.keys
    client.flushdb()
    caplog.clear()
    caplog.set_level(logging.WARNING, "taskqueue")
    expected_dead = 0
    used: set[bytes] = set()
    for kind, queue, value in entries:
        if kind == "raw" or kind == "task-id":
            if value in used:
                continue  # two entries naming one id are one task
            used.add(value)
        if kind == "raw":
            client.rpush(keys.queue(queue), value)
            expected_dead += 1
        elif kind == "task-id":  # arbitrary bytes as the id of a stored task
            client.hset(keys.task_prefix.encode() + value, mapping={"payload": b"\x90", "status": b"PENDING"})
            client.rpush(keys.queue(queue), value)
            expected_dead += 1
        elif kind == "task":
            task_id = f"hostile-{uuid.uuid4().hex[:8]}"
            client.hset(keys.task(task_id), mapping=value)
            client.rpush(keys.queue(queue), task_id)
            if value["status"] == b"PENDING" or value["status"] not in STATUSES:  # others: stale
                expected_dead += 1
        elif kind == "scheduled":
            client.zadd(keys.scheduled, {value: 0})
        else:
            client.zadd(keys.leases, {value: 0})
    label = uuid.uuid4().hex
    # The lowest priority, last in line: when it has run, the worker has seen everything above.
    assert sentinel.apply_async(args=(label,), queue="low").result(timeout=15) == label
    assert ran[-1] == label
    pool = q.pool
    assert pool.count() == 1 and all(s.thread.is_alive() for s in pool._slots), "a worker thread died"
    assert "unreachable or failing" not in caplog.text, caplog.text  # no script error
    # Nothing left in any structure: every entry was run, buried or (with no task) removed.
    assert [client.llen(keys.queue(name)) for name in q.settings.queues] == [0, 0, 0]
    assert client.zcard(keys.leases) == 0 and client.zcard(keys.scheduled) == 0
    dead = q.dead_letters()
    assert len(dead) == expected_dead, dead
    assert all(d.reason.startswith(KNOWN_REASONS) for d in dead), [d.reason for d in dead]
    assert ran.count(label) == 1
