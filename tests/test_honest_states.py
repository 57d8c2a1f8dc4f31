"""Honest states (DESIGN 9): RUNNING means a task's code started, for every reader.

The reproductions of issue 13 on the real server with real worker pools: a task
that sits leased in a thread's prefetch buffer reads PENDING through its handle,
``get_metrics()``, the monitor's snapshot and the HTTP document, and counts as
prefetched, not running; a pool whose two tasks read RUNNING is busy; a task
that ends within ``workers.status_delay`` never reads RUNNING; and the threads'
states (busy with what, idle) are as fresh as the task states, not a heartbeat old.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.integrations.flask import TaskQueueExtension

from .conftest import make_settings, wait_until

#: The prefetch window is long so that a buffered task stays in its buffer (the
#: watchdog hands a slow task's buffer back once it has run that long).
PREFETCHING = {"workers": {"prefetch_window": 30.0}}


def stored_status(client: redis.Redis, queue: TaskQueue, task_id: str) -> str:
    """The status as stored in Redis (LEASED for a prefetched task), not as read."""
    raw = client.hget(queue.broker.keys.task(task_id), "status")
    return raw.decode() if isinstance(raw, bytes) else ""


def busy_slots(queue: TaskQueue) -> list[tuple[str, str]]:
    """(thread, task id) of every busy thread that live workers published."""
    return sorted(
        (str(slot.get("thread")), str(slot["task_id"]))
        for info in queue.broker.live_workers().values()
        for slot in info.get("slots") or ()
        if isinstance(slot, dict) and slot.get("task_id")
    )


@pytest.fixture
def queue(request: pytest.FixtureRequest, make_queue: Callable[..., TaskQueue]) -> TaskQueue:
    """A queue on the real server; a test's indirect parameter holds setting overrides."""
    return make_queue(**getattr(request, "param", {}))


@pytest.fixture
def http_get(queue: TaskQueue) -> Iterator[Callable[[str], dict[str, Any]]]:
    """GET <prefix>/<task id> of a Flask app that uses ``queue`` (no workers of its own)."""
    app = Flask("honest_states")
    TaskQueueExtension(app, queue=queue, start_workers=False)
    client = app.test_client()
    prefix = queue.settings.flask.route_prefix

    def get(task_id: str) -> dict[str, Any]:
        reply = client.get(f"{prefix}/{task_id}")
        assert reply.status_code == 200, reply.data
        document: dict[str, Any] = reply.get_json()
        return document

    yield get


def warm_up(queue: TaskQueue) -> None:
    """Run a few quick tasks, so the thread knows its tasks are quick and prefetches."""

    @queue.task(name="hs.quick")
    def quick() -> None:
        return None

    for handle in queue.enqueue_many([quick.s() for _ in range(3)]):
        handle.result(timeout=10)


# -- (a) one thread: the running task and the prefetched one ------------------------------
@pytest.mark.parametrize("queue", [PREFETCHING], indirect=True)
def test_a_prefetched_task_reads_pending_to_every_reader(
    queue: TaskQueue, redis_client: redis.Redis, http_get: Callable[[str], dict[str, Any]]
) -> None:
    started = {"a": threading.Event(), "b": threading.Event()}
    release = threading.Event()

    @queue.task(name="hs.hold")
    def hold(tag: str) -> str:
        started[tag].set()
        release.wait(30)
        return tag

    queue.start_workers(1)
    warm_up(queue)
    queue.pause("default")  # so that one fetch leases both
    a, b = queue.enqueue_many([hold.s("a"), hold.s("b")])
    queue.resume("default")
    try:
        assert started["a"].wait(10)
        wait_until(lambda: a.status == "RUNNING")  # past workers.status_delay
        assert stored_status(redis_client, queue, b.id) == "LEASED"  # in the thread's buffer

        assert b.status == "PENDING" and not started["b"].is_set()
        m = queue.get_metrics()
        assert (m.total_running_tasks, m.total_prefetched_tasks, m.busy_workers) == (1, 1, 1)
        assert m.total_pending_tasks == 0  # b left its queue: it is counted as prefetched
        snap = queue.broker.snapshot(queue.settings.queues_by_priority())
        assert (snap.leased, snap.running, snap.prefetched) == (2, 1, 1)
        monitor = queue.monitor(autostart=False)
        try:
            assert "running <b>1</b> · prefetched <b>1</b>" in monitor.totals.value
            assert monitor.metrics is not None and monitor.metrics.total_running_tasks == 1
            assert a.id[:12] in monitor.workers_table.value and b.id[:12] not in monitor.workers_table.value
        finally:
            monitor.close()
        assert "1 / 1 / 0" in queue._repr_html_()  # running / prefetched / scheduled
        assert http_get(b.id)["status"] == "PENDING" and http_get(b.id)["started_at"] is None
        assert http_get(a.id)["status"] == "RUNNING" and http_get(a.id)["started_at"] is not None
    finally:
        release.set()
    assert (a.result(timeout=10), b.result(timeout=10)) == ("a", "b")
    assert (a.status, b.status) == ("SUCCEEDED", "SUCCEEDED")
    assert http_get(b.id)["status"] == "SUCCEEDED"


# -- (b) two threads: two RUNNING tasks mean a busy pool -----------------------------------
def test_two_running_tasks_on_two_threads_leave_no_thread_free(queue: TaskQueue) -> None:
    release = threading.Event()
    ran: list[int] = []

    @queue.task(name="hs.block")
    def block(tag: str) -> str:
        release.wait(30)
        return tag

    @queue.task(name="hs.note")
    def note(i: int) -> int:
        ran.append(i)
        return i

    queue.start_workers(2)
    warm_up(queue)  # quick tasks first: the threads prefetch, as in the run
    x, y = queue.enqueue_many([block.s("x"), block.s("y")])
    try:
        wait_until(lambda: (x.status, y.status) == ("RUNNING", "RUNNING"))
        assert queue.pool is not None and queue.pool.busy() == 2  # both threads are in their code
        quick = queue.enqueue_many([note.s(i) for i in range(6)])
        assert sorted(task for _, task in busy_slots(queue)) == sorted([x.id, y.id])
        m = queue.get_metrics()
        assert (m.active_workers, m.busy_workers, m.total_running_tasks, m.total_prefetched_tasks) == (
            2,
            2,
            2,
            0,
        )
        assert m.total_pending_tasks == 6 and all(h.status == "PENDING" for h in quick)
        assert ran == [] and queue.pool.busy() == 2  # no thread was free to run them
    finally:
        release.set()
    assert [h.result(timeout=10) for h in quick] == list(range(6))
    assert (x.result(timeout=10), y.result(timeout=10)) == ("x", "y")


# -- (c) a task that ends within the status delay never reads RUNNING ----------------------
@pytest.mark.parametrize("queue", [{"workers": {"status_delay": 2.0}}], indirect=True)
def test_a_task_ending_within_the_status_delay_never_reads_running(queue: TaskQueue) -> None:
    entered, go = threading.Event(), threading.Event()

    @queue.task(name="hs.gate")
    def gate() -> str:
        entered.set()
        go.wait(10)
        return "done"

    queue.start_workers(1)
    h = gate.delay()
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while True:
        status = h.status
        seen.append(status)
        if status == "PENDING" and entered.is_set():
            go.set()  # its code runs and reads PENDING: let it finish at once
        if status in ("SUCCEEDED", "FAILED", "DEAD", "CANCELLED"):
            break
        assert time.monotonic() < deadline, sorted(set(seen))
    assert entered.is_set() and go.is_set()
    assert "RUNNING" not in seen and seen[-1] == "SUCCEEDED", sorted(set(seen))
    assert h.result(timeout=1) == "done"


# -- (d) the threads' states are as fresh as the task states -------------------------------
@pytest.mark.parametrize("queue", [{"workers": {"heartbeat_interval": 30.0}}], indirect=True)
def test_thread_states_are_published_without_waiting_for_a_heartbeat(queue: TaskQueue) -> None:
    started, release = threading.Event(), threading.Event()
    delay = queue.settings.workers.status_delay
    margin = 1.0  # far below the heartbeat interval (30 s)

    @queue.task(name="hs.long")
    def long_task() -> None:
        started.set()
        release.wait(30)

    queue.start_workers(2)
    wait_until(lambda: busy_slots(queue) == [] and queue.broker.live_workers())
    h = long_task.delay()
    try:
        assert started.wait(10)
        busy = wait_until(lambda: busy_slots(queue), timeout=delay + margin)
        assert [task for _, task in busy] == [h.id] and h.status == "RUNNING"

        def running_for() -> float:
            threads = [t for w in queue.get_metrics().workers for t in w.thread_details if t.task_id]
            assert [t.task_id for t in threads] == [h.id]
            assert threads[0].running_seconds is not None
            return threads[0].running_seconds

        # counted to the reader's instant from the published start, so it grows with
        # no publication in between (the state publisher writes only on a change)
        first = running_for()
        wait_until(lambda: running_for() >= first + 0.2, timeout=5)
    finally:
        release.set()
    h.result(timeout=10)
    wait_until(lambda: busy_slots(queue) == [], timeout=delay + margin)
    assert queue.get_metrics().busy_workers == 0


# -- tasks that no live worker serves ------------------------------------------------------
@pytest.fixture
def look_past(redis_url: str) -> Iterator[Callable[[], None]]:
    """Another worker on the same namespace that serves only ``hs.served``; calling this
    runs one such task, so that worker has fetched past the tasks it does not serve."""
    other = TaskQueue(redis_url, settings=make_settings(), registry=TaskRegistry())

    @other.task(name="hs.served")
    def served() -> str:
        return "ok"

    other.start_workers(1)

    def run_one() -> None:
        assert served.delay().result(timeout=10) == "ok"

    yield run_one
    other.close()


def test_tasks_no_worker_serves_are_counted_and_degrade_health(
    queue: TaskQueue, look_past: Callable[[], None]
) -> None:
    @queue.task(name="hs.orphan")
    def orphan() -> None:
        return None

    waiting = queue.enqueue_many([orphan.s(), orphan.s()])
    look_past()
    wait_until(lambda: queue.get_metrics().total_unserved_tasks == 2)
    assert all(h.status == "PENDING" for h in waiting)
    snap = queue.broker.snapshot(queue.settings.queues_by_priority())
    assert snap.unserved == 2 and snap.pending["default"] == 0  # parked out of the queue
    health = queue.health_check()
    component = health.components["queues"]
    assert component.status == "degraded" and component.details["unserved_tasks"] == 2
    assert component.message.startswith("2 pending task(s) wait because no live worker serves")
    assert "start a worker that serves them" in component.message
    assert "workers.unknown_task_grace (300 s)" in component.message
    monitor = queue.monitor(autostart=False)
    try:
        assert "2 pending task(s) wait because no live worker serves" in monitor.totals.value
    finally:
        monitor.close()
    queue.start_workers(1)  # a worker that serves them
    assert [h.result(timeout=10) for h in waiting] == [None, None]
    wait_until(lambda: queue.get_metrics().total_unserved_tasks == 0)
    assert queue.health_check().components["queues"].status == "healthy"


def test_cancelled_or_purged_unserved_tasks_are_no_longer_counted(
    queue: TaskQueue, look_past: Callable[[], None]
) -> None:
    @queue.task(name="hs.orphan")
    def orphan() -> None:
        return None

    first = queue.enqueue_many([orphan.s() for _ in range(3)])[0]
    look_past()
    wait_until(lambda: queue.get_metrics().total_unserved_tasks == 3)
    assert first.cancel() and first.status == "CANCELLED"
    assert queue.get_metrics().total_unserved_tasks == 2
    assert queue.purge("default") == 2
    assert queue.get_metrics().total_unserved_tasks == 0
    assert queue.health_check().components["queues"].status == "healthy"
