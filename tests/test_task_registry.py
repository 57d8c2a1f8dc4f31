"""The task registry in Redis: processes with different tasks share a namespace.

Each worker leases only the tasks it serves; a task nobody serves waits
(visible) instead of being dead-lettered by whichever worker saw it first.
Real worker processes, real server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskqueue import TaskQueue, TaskRegistry, TaskStatus
from taskqueue.task import Signature

from .conftest import wait_until
from .registry_worker import build

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def spawn(redis_url: str) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(kind: str, threads: int = 2) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "registry_worker.py"), redis_url, kind, str(threads)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def interleaved(producer: TaskQueue, count: int, first: str = "b") -> list[tuple[str, int, object]]:
    """``count`` tasks of each kind in one queue, alternating, ``first`` at the head."""
    order = [first, "a" if first == "b" else "b"]
    items = [(kind, n) for n in range(count) for kind in order]
    handles = producer.enqueue_many([Signature(f"app.{kind}.work", (n,)) for kind, n in items])
    return [(kind, n, h) for (kind, n), h in zip(items, handles, strict=True)]


def test_processes_with_disjoint_tasks_each_run_their_own(spawn, redis_url, redis_client) -> None:
    # A producer that knows both names (it runs no worker).
    producer = build(redis_url, "a")
    build_b = build(redis_url, "b")
    producer.registry.register(build_b.registry.get("app.b.work"))
    build_b.close()
    try:
        proc_a = spawn("a")
        # Phase 1: only A is live. B's tasks are ahead of every A task in the queue.
        tasks = interleaved(producer, 200, first="b")
        for kind, n, h in tasks:
            if kind == "a":
                assert h.result(timeout=30) == f"a{n}"
        b_handles = [h for kind, _, h in tasks if kind == "b"]
        # B's tasks wait, visibly, and are not dead-lettered by A.
        assert {h.status for h in b_handles} == {TaskStatus.PENDING}
        assert producer.broker.unserved().count == 200
        assert sum(producer.broker.dead_count(["default"]).values()) == 0
        assert sorted(producer.broker.served_tasks()) == ["app.a.work"]

        # Phase 2: B starts and takes exactly its own.
        proc_b = spawn("b")
        for n, h in enumerate(b_handles):
            assert h.result(timeout=30) == f"b{n}"
        assert producer.broker.unserved().count == 0

        # Phase 3: both live, 200 more of each interleaved.
        more = interleaved(producer, 200, first="a")
        for kind, n, h in more:
            assert h.result(timeout=30) == f"{kind}{n}"
        assert sum(producer.broker.dead_count(["default"]).values()) == 0
        pids = {"a": str(proc_a.pid).encode(), "b": str(proc_b.pid).encode()}
        for kind in ("a", "b"):
            ran = redis_client.hgetall(f"ledger:{kind}")
            assert len(ran) == 200 and set(ran.values()) == {pids[kind]}  # each ran only its own
        assert sorted(producer.broker.served_tasks()) == ["app.a.work", "app.b.work"]
    finally:
        producer.close()


def test_a_task_defined_after_the_workers_started_runs_at_once(redis_url) -> None:
    # A notebook: workers first, then a new cell defines a task; no heartbeat wait.
    q = TaskQueue(redis_url, registry=TaskRegistry(), workers={"heartbeat_interval": 30.0})
    try:
        q.start_workers(1)

        @q.task(name="late.defined")
        def late(x: int) -> int:
            return x * 2

        assert late.delay(21).result(timeout=5) == 42
    finally:
        q.close()


def test_a_flushed_registry_is_published_again(redis_url, redis_client) -> None:
    q = TaskQueue(redis_url, registry=TaskRegistry(), workers={"heartbeat_interval": 30.0})
    try:

        @q.task(name="survives.flush")
        def echo(x: int) -> int:
            return x

        q.start_workers(1)
        assert echo.delay(1).result(timeout=5) == 1
        redis_client.flushdb()  # the task sets are gone until the next heartbeat (30 s)
        assert echo.delay(2).result(timeout=5) == 2
        assert sum(q.broker.dead_count(["default"]).values()) == 0
    finally:
        q.close()


def test_a_task_nobody_serves_is_dead_lettered_after_the_grace(redis_url) -> None:
    q = TaskQueue(
        redis_url, registry=TaskRegistry(), workers={"unknown_task_grace": 0.5, "idle_poll_seconds": 0.1}
    )
    try:

        @q.task(name="served.here")
        def here() -> str:
            return "ok"

        producer = TaskQueue(redis_url, registry=TaskRegistry())
        producer.registry.register(q.registry.get("served.here"))

        @producer.task(name="served.nowhere")
        def nowhere() -> None: ...

        orphan = nowhere.delay()
        q.start_workers(1)
        assert here.delay().result(timeout=5) == "ok"  # served at once, though behind the orphan
        assert orphan.status is TaskStatus.PENDING
        wait_until(lambda: orphan.status is TaskStatus.DEAD, timeout=10)
        (dead,) = q.dead_letters()
        assert dead.reason.startswith("unknown-task: no live worker serves a task named 'served.nowhere'")
        producer.close()
    finally:
        q.close()
