"""q.map: one round trip to send, results in input order, failures, timeouts, cancellation."""

from __future__ import annotations

import threading

import pytest

from taskqueue import ConfigurationError, TaskFailed, TaskNotFound, TaskQueue, TaskStatus, current_task
from tests.brokerkit import queue_ids


def test_results_come_back_in_input_order(any_queue: TaskQueue) -> None:
    q = any_queue

    @q.task
    def add(x: int, y: int) -> int:
        return x + y

    @q.task
    def square(x: int) -> int:
        return x * x

    with q.running(workers=3):
        assert q.map(add, [(i, i) for i in range(40)], progress=False) == [2 * i for i in range(40)]
        assert q.map(square, range(10), progress=True) == [i * i for i in range(10)]
        assert q.map(square.name, [3], progress=False) == [9]
        assert q.map(square, [], progress=False) == []


def test_all_tasks_are_sent_in_one_round_trip(queue: TaskQueue, monkeypatch) -> None:
    @queue.task
    def ident(x: int) -> int:
        return x

    calls = []
    real = queue.broker.enqueue
    monkeypatch.setattr(queue.broker, "enqueue", lambda reqs: calls.append(len(reqs)) or real(reqs))
    with queue.running(workers=2):
        assert queue.map(ident, range(25), progress=False) == list(range(25))
    assert calls == [25]


def test_first_failure_raises_with_remote_traceback_and_cancels_the_rest(queue: TaskQueue) -> None:
    started = []

    @queue.task(max_retries=0)
    def job(x: int) -> int:
        started.append(x)
        if x < 0:
            raise ValueError(f"bad input {x}")
        current_task().wait(10)  # until cancelled
        current_task().check()
        return x

    with queue.running(workers=1):
        with pytest.raises(TaskFailed) as info:
            queue.map(job, [-1, 1, 2, 3, 4], progress=False)
        error = info.value
        assert error.error_type == "ValueError" and "bad input -1" in error.error_message
        assert 'raise ValueError(f"bad input {x}")' in error.remote_traceback
        assert any("item 0 of 5" in note for note in error.__notes__)
        ids = queue_ids(queue.broker, "default")
        assert ids == []  # the pending ones were cancelled, not left in the queue
    assert len(started) <= 2  # the failing task, and at most the one running at that moment


def test_return_exceptions_puts_errors_in_the_list(any_queue: TaskQueue) -> None:
    q = any_queue

    @q.task(max_retries=0)
    def inverse(x: float) -> float:
        return 1 / x

    with q.running(workers=2):
        results = q.map(inverse, [1, 0, 4], progress=False, return_exceptions=True)
    assert results[0] == 1.0 and results[2] == 0.25
    assert isinstance(results[1], TaskFailed) and results[1].error_type == "ZeroDivisionError"


def test_timeout_raises_and_cancels_pending_tasks(queue: TaskQueue, monkeypatch) -> None:
    @queue.task
    def never_runs(x: int) -> int:
        return x

    sent = []
    real = queue.enqueue_many
    monkeypatch.setattr(queue, "enqueue_many", lambda items: sent.extend(real(items)) or sent)
    with (
        pytest.warns(UserWarning, match="no worker is running"),
        pytest.raises(TimeoutError, match=r"3 of 3 tasks had not finished after 0\.3 s"),
    ):
        queue.map(never_runs, [1, 2, 3], progress=False, timeout=0.3)
    assert len(sent) == 3
    assert [h.status for h in sent] == [TaskStatus.CANCELLED] * 3
    assert queue_ids(queue.broker, "default") == []


def test_interrupt_cancels_unfinished_tasks(queue: TaskQueue, monkeypatch) -> None:
    release = threading.Event()

    @queue.task
    def slow(x: int) -> int:
        release.wait(10)
        return x

    seen = []
    real = queue.broker.task_statuses

    def interrupt_on_second_sweep(ids):
        seen.append(ids)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(ids)

    monkeypatch.setattr(queue.broker, "task_statuses", interrupt_on_second_sweep)
    with queue.running(workers=1):
        with pytest.raises(KeyboardInterrupt):
            queue.map(slow, [1, 2, 3], progress=False)
        release.set()
        statuses = [queue.get(i).status for i in seen[0]]
    # The one running when interrupted may finish; the two still pending never run.
    assert statuses[1:] == [TaskStatus.CANCELLED, TaskStatus.CANCELLED]


def test_bad_arguments_are_refused_before_anything_is_sent(queue: TaskQueue) -> None:
    @queue.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError, match=r"item 1 \(\(1, 2, 3\)\) does not fit the task"):
        queue.map(add, [(1, 2), (1, 2, 3)], progress=False)
    assert queue.pending()["default"] == 0
    with pytest.raises(TypeError, match="registered task name"):
        queue.map(lambda x: x, [1], progress=False)
    with pytest.raises(TypeError, match="iterable of arguments"):
        queue.map(add, "abc", progress=False)
    with pytest.raises(ValueError, match="timeout must be"):
        queue.map(add, [(1, 2)], timeout=-1, progress=False)
    with pytest.raises(ConfigurationError, match="unknown queue 'nope'"):
        queue.map(add, [(1, 2)], queue="nope", progress=False)
    with pytest.raises(TaskNotFound):
        queue.map("no.such.task", [1], progress=False)
