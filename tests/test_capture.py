"""Per-task output capture: print, stderr and logging of a task end up on its handle."""

from __future__ import annotations

import logging
import sys

import pytest
import redis

from taskqueue import TaskFailed, TaskQueue
from taskqueue.capture import OutputBuffer, as_text


def test_print_stderr_and_logging_are_kept_on_the_handle(any_queue: TaskQueue, capsys) -> None:
    q = any_queue

    @q.task
    def noisy(n: int) -> int:
        print("hello from the task", n)
        print("partial line without newline", end="")
        sys.stderr.write("to stderr\n")
        logging.getLogger("demo.task").warning("careful with %s", n)
        return n * 2

    with q.running(workers=1):
        h = noisy.delay(21)
        assert h.result(timeout=10) == 42
        print("from the test thread")
    lines = h.logs.splitlines()
    assert lines == [
        "hello from the task 21",
        "to stderr",
        "WARNING:demo.task:careful with 21",
        "partial line without newline",
    ]
    out, err = capsys.readouterr()
    # Nothing the task wrote reached the process's streams; other threads are untouched.
    assert "hello from the task" not in out and "partial line" not in out
    assert "to stderr" not in err and "careful with" not in err
    assert "from the test thread" in out


def test_a_silent_task_writes_no_log_key(queue: TaskQueue, redis_client: redis.Redis) -> None:
    @queue.task
    def quiet(n: int) -> int:
        return n

    with queue.running(workers=1):
        handles = [quiet.delay(i) for i in range(5)]
        assert [h.result(timeout=10) for h in handles] == list(range(5))
    assert handles[0].logs == ""
    assert list(redis_client.scan_iter(match=queue.broker.keys.logs_prefix + "*")) == []


def test_failures_keep_each_attempt_and_its_traceback(queue: TaskQueue) -> None:
    @queue.task(max_retries=1)
    def flaky() -> None:
        print("trying")
        raise ValueError("broken on purpose")

    with queue.running(workers=1):
        h = flaky.delay()
        with pytest.raises(TaskFailed):
            h.result(timeout=10)
    text = h.logs
    assert text.count("trying") == 2
    assert "--- attempt 2 ---" in text
    assert text.count("ValueError: broken on purpose") >= 2
    assert "Traceback (most recent call last)" in text
    # The worker's own line about the failure is kept with the task, not printed.
    assert "attempt 2 dead" in text


def test_logs_are_bounded(make_queue) -> None:
    q = make_queue(tasks={"max_log_lines": 10})

    @q.task
    def chatty() -> None:
        for i in range(50):
            print("line", i)

    with q.running(workers=1):
        h = chatty.delay()
        h.result(timeout=10)
    lines = h.logs.splitlines()
    assert len(lines) == 10
    assert lines[0] == "[... 41 earlier lines dropped (tasks.max_log_lines)]"
    assert lines[-1] == "line 49"


def test_capture_can_be_turned_off(make_queue, capfd) -> None:
    q = make_queue(tasks={"capture_output": False})

    @q.task
    def shout() -> None:
        print("visible in the process")

    with q.running(workers=1):
        h = shout.delay()
        h.result(timeout=10)
    assert h.logs == ""
    assert "visible in the process" in capfd.readouterr().out


def test_output_buffer_splits_lines_and_cuts_long_ones() -> None:
    buffer = OutputBuffer(max_lines=100, attempt=1)
    buffer.write("o", "a\nb")
    buffer.write("o", "c\n")
    buffer.write("e", "x" * 20_000 + "\n")
    lines = buffer.lines()
    assert lines[:2] == ["oa", "obc"]
    assert lines[2].startswith("e" + "x" * 10_000) and lines[2].endswith("characters cut]")
    assert as_text(["oone", "etwo", "lthree"]) == "one\ntwo\nthree"


def test_a_timeout_recorded_by_the_watchdog_keeps_the_output_and_the_line(queue: TaskQueue, capfd) -> None:
    """The watchdog ends a timed-out attempt from its own thread: the capture hooks still
    keep what the task printed, the worker's line and the TaskTimeout with the task."""

    @queue.task(timeout=0.2, max_retries=0)
    def stuck() -> None:
        print("working on it")
        while True:
            sum(range(100))

    with queue.running(workers=1):
        h = stuck.delay()
        with pytest.raises(TaskFailed, match="TaskTimeout"):
            h.result(timeout=10)
    text = h.logs
    assert text.startswith("working on it")
    assert f"{h.id} attempt 1 dead after" in text and "exceeded its timeout of 0.2 s" in text
    assert "TaskTimeout" in text.splitlines()[-1]
    out, err = capfd.readouterr()
    assert "working on it" not in out and "attempt 1 dead" not in err


def test_a_rejected_delivery_keeps_the_worker_line(queue: TaskQueue) -> None:
    """Rejected before it started (no task_started): its failure line is still kept."""
    from taskqueue.serialization import Envelope, encode

    client, keys = queue.broker.client, queue.broker.keys
    client.hset(
        keys.task("stray"),
        mapping={
            "payload": encode(Envelope("no.such.task"), max_bytes=1000),
            "queue": "default",
            "status": "PENDING",
            "attempts": 0,
            "max_retries": 3,
        },
    )
    client.rpush(keys.queue("default"), "stray")
    with queue.running(workers=1), pytest.raises(TaskFailed):
        queue.get("stray").result(timeout=10)
    text = queue.get("stray").logs
    assert (
        "task no.such.task stray attempt 1 dead after 0.0" in text and ": unknown-task: no task named" in text
    )
