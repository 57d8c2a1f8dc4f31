"""Every limit, with the clear error a caller gets when crossing it: payload
size, nesting depth, result size, queue and task names, task ids. Limits are
enforced where data enters (the producer) and again where it is read (the
worker), since anyone who can write to Redis skips the producer."""

from __future__ import annotations

import msgpack
import pytest

from taskqueue import (
    ConfigurationError,
    PayloadTooLarge,
    Signature,
    TaskFailed,
    TaskNotFound,
    TaskQueue,
    load_settings,
)
from taskqueue.registry import NAME_MAX
from taskqueue.serialization import MAX_DEPTH, SerializationError


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _dead_reason(q: TaskQueue, task_id: str) -> str:
    with q.running(workers=1), pytest.raises(TaskFailed):
        q.get(task_id).result(timeout=10)
    return q.get(task_id).record().reason


def test_payload_size_limit_at_enqueue_and_in_the_worker(make_queue, redis_client) -> None:
    q = make_queue(tasks={"max_payload_bytes": 2000})

    @q.task
    def echo(value):
        return value

    assert echo.delay("x" * 1800).id  # under the limit
    with pytest.raises(PayloadTooLarge) as info:
        echo.delay("x" * 2100)
    assert "over the limit of 2000 bytes (raise tasks.max_payload_bytes" in str(info.value)
    assert (info.value.limit, info.value.size > 2000) == (2000, True)
    assert q.pending("default") == {"default": 1}  # the refused one wrote nothing
    # Written straight into Redis, around the producer: the worker refuses it unread.
    big = msgpack.packb({"v": 1, "n": echo.name, "a": ["y" * 5000]})
    redis_client.hset(
        q.broker.keys.task("big"), mapping={"payload": big, "status": "PENDING", "queue": "default"}
    )
    redis_client.rpush(q.broker.keys.queue("default"), "big")
    assert _dead_reason(q, "big") == f"bad-payload: {len(big)} bytes, over tasks.max_payload_bytes (2000)"


def test_argument_nesting_depth_limit(make_queue, redis_client) -> None:
    q = make_queue()

    @q.task
    def echo(value):
        return len(str(value))

    assert echo.delay(_nested(MAX_DEPTH)).id
    with pytest.raises(SerializationError, match=f"arguments nest deeper than {MAX_DEPTH} levels"):
        echo.delay(_nested(MAX_DEPTH + 1))
    deep = msgpack.packb({"v": 1, "n": echo.name, "a": [_nested(MAX_DEPTH + 10)]})
    redis_client.hset(
        q.broker.keys.task("deep"), mapping={"payload": deep, "status": "PENDING", "queue": "default"}
    )
    redis_client.rpush(q.broker.keys.queue("default"), "deep")
    assert _dead_reason(q, "deep") == f"bad-payload: arguments nest deeper than {MAX_DEPTH} levels"


def test_result_size_limit(make_queue) -> None:
    q = make_queue(tasks={"max_result_bytes": 1000})

    @q.task(max_retries=3)
    def produce(n):
        return "z" * n

    with q.running(workers=1):
        assert produce.delay(900).result(timeout=10) == "z" * 900
        handle = produce.delay(2000)
        with pytest.raises(TaskFailed) as info:
            handle.result(timeout=10)
    assert info.value.error_type == "taskqueue.errors.PayloadTooLarge"
    assert "result is 2003 bytes, over the limit of 1000 bytes (raise tasks.max_result_bytes" in str(
        info.value
    )
    assert (handle.record().status, handle.record().attempts) == (
        "FAILED",
        1,
    )  # not retried: it would fail again


@pytest.mark.parametrize("name", ["with space", "brace{x}", "tab\there", "", "q" * (NAME_MAX + 1)])
def test_queue_names_are_checked_when_configured(name) -> None:
    rule = "a queue name must be non-empty, at most 200 characters, without spaces or braces"
    with pytest.raises(ConfigurationError, match=rule):
        load_settings(environ={}, queues={name: 1})


def test_unknown_queue_is_refused_with_the_known_ones(queue) -> None:
    with pytest.raises(
        ConfigurationError, match="unknown queue 'nope'; configured queues are high, default, low"
    ):
        queue.task(queue="nope")(lambda: None)

    @queue.task
    def job():
        return 1

    with pytest.raises(ConfigurationError, match="unknown queue 'bad name'"):
        job.apply_async(queue="bad name")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("with space", "contains ' '"),
        ("curly{}", "contains '{'"),
        ("nul\x00", "contains '\\\\x00'"),
        ("t" * (NAME_MAX + 1), f"longer than {NAME_MAX} characters"),
    ],
)
def test_task_names_are_checked_at_registration(queue, name, message) -> None:
    with pytest.raises(ValueError, match=message):
        queue.task(name=name)(lambda: None)


def test_unregistered_names_and_bad_ids_are_refused_at_enqueue(queue) -> None:
    with pytest.raises(TaskNotFound, match=r"no task named 'os\.system' is registered"):
        queue.enqueue(Signature("os.system", ("rm -rf /",)))

    @queue.task
    def job():
        return 1

    for bad in ("x" * 129, "a{b}", ""):
        with pytest.raises(ValueError, match="task_id must be a non-empty string of at most 128 characters"):
            job.apply_async(task_id=bad)


def test_per_call_options_are_checked_at_enqueue(queue) -> None:
    @queue.task
    def job():
        return 1

    for bad in (0, -1, "soon", float("nan"), True):
        with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
            job.apply_async(timeout=bad)
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="max_retries must be an int >= 0"):
            job.apply_async(max_retries=bad)
    assert queue.pending("default") == {"default": 0}
