"""Hooks on the worker side (DESIGN 9): the events of an attempt, the threads they
run in, the worker's log line per attempt, and the cost of the seam when unused."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

import pytest
import redis

from taskqueue import Retry, Signature, TaskFailed, TaskQueue, TaskStatus, current_task
from taskqueue.errors import TaskTimeout
from taskqueue.hooks import EVENTS, TaskEvent

from .conftest import wait_until

#: The events the worker emits (task_enqueued is the producer's).
WORKER_EVENTS = tuple(e for e in EVENTS if e != "task_enqueued")


class Recorder:
    """Collects events from every thread; ``wait_for`` blocks until a condition holds."""

    def __init__(self, q: TaskQueue, events: tuple[str, ...] = WORKER_EVENTS) -> None:
        self.events: list[TaskEvent] = []
        self.threads: list[str] = []
        self._cond = threading.Condition()
        for name in events:
            q.on(name, self)

    def __call__(self, event: TaskEvent) -> None:
        with self._cond:
            self.events.append(event)
            self.threads.append(threading.current_thread().name)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[TaskEvent]], bool], timeout: float = 10) -> list[TaskEvent]:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.events), timeout), self.names()
            return list(self.events)

    def names(self, task_id: str | None = None) -> list[str]:
        return [e.event for e in self.events if task_id is None or e.task_id == task_id]

    def of(self, task_id: str) -> list[TaskEvent]:
        return [e for e in self.events if e.task_id == task_id]


def _has(*names: str, task_id: str) -> Callable[[list[TaskEvent]], bool]:
    return lambda events: [e.event for e in events if e.task_id == task_id][-len(names) :] == list(names)


def test_a_succeeding_task_emits_started_then_succeeded_in_its_thread(any_queue: TaskQueue) -> None:
    q = any_queue
    seen = Recorder(q)

    @q.task(queue="high")
    def add(x: int, y: int) -> int:
        return x + y

    q.start_workers(1)
    pool_id, served = q.pool.id, q.pool.queues
    h = add.delay(1, 2)
    assert h.result(timeout=10) == 3
    seen.wait_for(_has("task_started", "task_succeeded", task_id=h.id))
    q.stop_workers()
    started, succeeded = seen.of(h.id)
    for e in (started, succeeded):
        assert (e.task_name, e.queue, e.attempt, e.worker_id, e.error) == (add.name, "high", 1, pool_id, None)
    assert started.duration is None and started.extra == {"headers": {}}
    assert succeeded.duration is not None and 0 <= succeeded.duration < 5
    threads = [t for e, t in zip(seen.events, seen.threads, strict=True) if e.task_id == h.id]
    assert all(t.startswith("taskqueue-worker-") for t in threads) and len(set(threads)) == 1
    assert seen.names()[0] == "worker_started" and seen.names()[-1] == "worker_stopped"
    assert {e.worker_id for e in seen.events} == {pool_id}
    assert seen.events[0].extra == {"queues": served, "threads": 1}


def test_a_retry_then_success_and_a_dead_task_emit_every_attempt(any_queue: TaskQueue) -> None:
    q = any_queue
    seen = Recorder(q)
    tries: list[int] = []

    @q.task(max_retries=2)
    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise Retry(delay=0.01)
        return "ok"

    @q.task(max_retries=1, retry_wait=lambda state: 0)
    def doomed() -> None:
        raise ValueError("never works")

    with q.running(workers=1):
        good, bad = flaky.delay(), doomed.delay()
        assert good.result(timeout=10) == "ok"
        with pytest.raises(TaskFailed):
            bad.result(timeout=10)
        seen.wait_for(_has("task_failed", "task_dead", task_id=bad.id))
    assert seen.names(good.id) == [
        "task_started", "task_failed", "task_retrying", "task_started", "task_succeeded",
    ]  # fmt: skip
    failed, retrying = seen.of(good.id)[1:3]
    assert isinstance(failed.error, Retry) and failed.extra["outcome"] == "retry"
    assert retrying.extra == {"delay": 0.01} and retrying.attempt == 1
    assert [e.attempt for e in seen.of(good.id)] == [1, 1, 1, 2, 2]
    assert seen.names(bad.id) == [
        "task_started", "task_failed", "task_retrying", "task_started", "task_failed", "task_dead",
    ]  # fmt: skip
    dead = seen.of(bad.id)[-1]
    assert isinstance(dead.error, ValueError) and dead.attempt == 2
    assert "retries exhausted" in dead.extra["reason"]


def test_a_timeout_is_a_failed_attempt(any_queue: TaskQueue) -> None:
    q = any_queue
    seen = Recorder(q, ("task_started", "task_failed", "task_dead"))

    @q.task(timeout=0.2, max_retries=0)
    def spin() -> None:
        while True:
            sum(range(100))

    with q.running(workers=1):
        h = spin.delay()
        with pytest.raises(TaskFailed, match="TaskTimeout"):
            h.result(timeout=10)
        events = seen.wait_for(_has("task_failed", "task_dead", task_id=h.id))
    failed = next(e for e in events if e.event == "task_failed")
    assert isinstance(failed.error, TaskTimeout) and failed.duration is not None and failed.duration >= 0.2


def test_a_lost_lease_is_a_failed_attempt(make_queue) -> None:
    q = make_queue()
    seen = Recorder(q, ("task_started", "task_failed", "task_succeeded"))

    @q.task
    def spin() -> str:
        if current_task().attempt > 1:
            return "second attempt"
        while True:
            sum(range(100))

    q.start_workers(1)
    pool = q.pool
    real = pool.link.heartbeat
    outage = threading.Event()

    def heartbeat(*args, **kwargs):
        if outage.is_set():
            raise redis.exceptions.ConnectionError("simulated outage")
        return real(*args, **kwargs)

    pool.link.heartbeat = heartbeat
    try:
        h = spin.delay()
        seen.wait_for(lambda events: any(e.task_id == h.id for e in events))
        outage.set()
        seen.wait_for(_has("task_started", "task_failed", task_id=h.id))
        outage.clear()
        assert h.result(timeout=10) == "second attempt"
    finally:
        pool.link.heartbeat = real
        q.stop_workers()
    failed = seen.of(h.id)[1]
    assert failed.extra["outcome"] == "lease-lost" and failed.attempt == 1
    assert failed.extra["reason"].startswith("not renewed for")


def test_a_rejected_delivery_emits_failed_then_dead(any_queue: TaskQueue) -> None:
    q = any_queue
    seen = Recorder(q, ("task_started", "task_failed", "task_dead"))
    from taskqueue.serialization import Envelope, encode

    client, keys = q.broker.client, q.broker.group("default")
    payload = encode(Envelope("no.such.task", (1,)), max_bytes=10_000)
    client.hset(
        keys.task("stray"),
        mapping={
            "payload": payload,
            "queue": "default",
            "status": "PENDING",
            "attempts": 0,
            "max_retries": 3,
        },
    )
    client.rpush(keys.queue("default"), "stray")
    with q.running(workers=1):
        events = seen.wait_for(_has("task_failed", "task_dead", task_id="stray"))
    failed, dead = [e for e in events if e.task_id == "stray"]
    assert failed.task_name == "no.such.task" and failed.duration is not None
    assert dead.extra["reason"].startswith("unknown-task")


def test_a_hook_that_raises_breaks_nothing(any_queue: TaskQueue, caplog) -> None:
    q = any_queue
    caplog.set_level(logging.ERROR, "taskqueue.hooks")

    def broken(event: TaskEvent) -> None:
        raise RuntimeError(f"hook bug in {event.event}")

    for name in ("task_started", "task_succeeded", "worker_started"):
        q.on(name, broken)

    @q.task
    def double(x: int) -> int:
        return 2 * x

    with q.running(workers=1):
        assert double.delay(21).result(timeout=10) == 42
        wait_until(lambda: "hook bug in task_succeeded" in caplog.text)
    assert "hook bug in task_started" in caplog.text and "hook bug in worker_started" in caplog.text


def test_headers_of_the_envelope_reach_task_started(any_queue: TaskQueue) -> None:
    q = any_queue
    seen = Recorder(q, ("task_started",))

    @q.task
    def noop() -> None:
        return None

    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with pytest.raises(ValueError, match="header 'bad' must be a string"):
        q.enqueue(Signature(noop.name, options={"headers": {**headers, "bad": 5}}))
    with q.running(workers=1):
        h = q.enqueue(Signature(noop.name, options={"headers": headers}))
        h.result(timeout=10)
        (started,) = seen.wait_for(lambda events: len(events) == 1)
    assert started.extra == {"headers": headers}


def test_a_task_cancelled_while_running_that_returns_normally_ends_cancelled(any_queue: TaskQueue) -> None:
    q = any_queue
    seen = Recorder(q, ("task_succeeded", "task_cancelled", "task_failed"))
    started = threading.Event()
    waited: list[bool] = []

    @q.task
    def poll() -> str:
        ctx = current_task()
        started.set()
        while not ctx.wait(0.1):
            waited.append(False)
        waited.append(True)
        return "finished anyway"

    with q.running(workers=1):
        h = poll.delay()
        assert started.wait(10)
        assert h.cancel() is False  # running: asked to stop
        with pytest.raises(TaskFailed, match="cancelled") as info:
            h.result(timeout=10)
        seen.wait_for(lambda events: len(events) == 1)
    assert info.value.status == "CANCELLED" and h.status is TaskStatus.CANCELLED
    assert waited[-1] is True  # wait() said so
    (cancelled,) = seen.events
    assert cancelled.event == "task_cancelled" and cancelled.duration is not None


def test_with_no_hook_no_event_is_built(make_queue, monkeypatch) -> None:
    """The hot path checks hooks.wants before it builds anything: with capture off,
    DEBUG off and no hook, running tasks constructs no TaskEvent at all."""
    import taskqueue.worker.events as events_module

    built: list[str] = []
    real = events_module.TaskEvent

    def counting(event: str, *args, **kwargs) -> TaskEvent:
        built.append(event)
        return real(event, *args, **kwargs)

    monkeypatch.setattr(events_module, "TaskEvent", counting)
    logging.getLogger("taskqueue.worker").setLevel(logging.INFO)
    try:
        q = make_queue(tasks={"capture_output": False})

        @q.task
        def noop(i: int) -> int:
            return i

        with q.running(workers=2):
            assert [h.result(timeout=10) for h in q.enqueue_many([noop.s(i) for i in range(20)])] == list(
                range(20)
            )
        assert built == []
        q.on("task_succeeded", lambda e: None)
        with q.running(workers=1):
            noop.delay(1).result(timeout=10)
        wait_until(lambda: built)
        assert built == ["task_succeeded"]
    finally:
        logging.getLogger("taskqueue.worker").setLevel(logging.NOTSET)


# -- the worker's log line per attempt ----------------------------------------------------
def _lines(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "taskqueue.worker" and r.levelno == level]


def test_log_lines_name_the_task_id_attempt_and_duration(queue: TaskQueue, caplog) -> None:
    caplog.set_level(logging.DEBUG, "taskqueue.worker")
    seen = Recorder(queue, ("task_succeeded", "task_dead"))

    @queue.task(name="shop.resize", max_retries=1, retry_wait=lambda state: 0)
    def resize(ok: bool) -> str:
        if not ok:
            raise ConnectionError("reset by peer")
        return "done"

    with queue.running(workers=1):
        good, bad = resize.delay(True), resize.delay(False)
        good.result(timeout=10)
        with pytest.raises(TaskFailed):
            bad.result(timeout=10)
        seen.wait_for(lambda events: len(events) == 2)
    (success,) = [line for line in _lines(caplog, logging.DEBUG) if good.id in line]
    assert re.fullmatch(rf"task shop\.resize {good.id} attempt 1 succeeded in \d+\.\d{{3}} s", success)
    (retry,) = [line for line in _lines(caplog, logging.INFO) if bad.id in line]
    assert re.fullmatch(
        rf"task shop\.resize {bad.id} attempt 1 failed after \d+\.\d{{3}} s, retry in 0\.00 s: "
        r"ConnectionError: reset by peer",
        retry,
    )
    (dead,) = [line for line in _lines(caplog, logging.WARNING) if bad.id in line]
    assert re.fullmatch(
        rf"task shop\.resize {bad.id} attempt 2 dead after \d+\.\d{{3}} s: "
        r"retries exhausted after 2 attempt\(s\): ConnectionError: reset by peer",
        dead,
    )
    # The failure lines are kept with the task too; a success line is not stored.
    assert "attempt 2 dead after" in bad.logs and good.logs == ""


def test_the_log_line_of_a_cancelled_task(queue: TaskQueue, caplog) -> None:
    caplog.set_level(logging.INFO, "taskqueue.worker")
    started = threading.Event()

    @queue.task(name="long.job")
    def job() -> None:
        started.set()
        current_task().wait(10)
        current_task().check()

    with queue.running(workers=1):
        h = job.delay()
        assert started.wait(10)
        h.cancel()
        with pytest.raises(TaskFailed):
            h.result(timeout=10)
        wait_until(lambda: _lines(caplog, logging.INFO))
    (line,) = [line for line in _lines(caplog, logging.INFO) if h.id in line]
    assert re.fullmatch(rf"task long\.job {h.id} attempt 1 cancelled after \d+\.\d{{3}} s: .*cancelled", line)
