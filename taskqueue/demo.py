"""``taskqueue demo``: a short, visible run on a private embedded server.

It shows in a few seconds what the library does: one-round-trip batches,
priorities (the urgent task sent last runs first), a delayed task, retries
with backoff, a task that ends in the dead-letter queue, and the status
table. It touches nothing of the user's: the server lives in a temporary
directory that is removed at the end.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Callable

from taskqueue.config import Settings
from taskqueue.context import current_task
from taskqueue.errors import TaskFailed
from taskqueue.queue import TaskQueue
from taskqueue.registry import TaskRegistry

DEMO_SETTINGS = Settings().replace(
    workers={"heartbeat_interval": 1.0, "idle_poll_seconds": 0.5, "shutdown_grace_period": 5},
    tasks={"retry_backoff_initial": 0.1, "retry_backoff_max": 0.3, "retry_jitter": 0.05},
)


def run_demo(
    echo: Callable[[str], None], *, count: int, workers: int, render: Callable[[TaskQueue], str]
) -> None:
    started = time.monotonic()
    worker_log = logging.getLogger("taskqueue.worker")
    level = worker_log.level
    worker_log.setLevel(logging.ERROR)  # the outcomes are printed below instead
    with tempfile.TemporaryDirectory(prefix="tq-demo-") as data_dir:
        q = TaskQueue(settings=DEMO_SETTINGS, registry=TaskRegistry(), data_dir=data_dir)
        try:
            _run(q, echo, count, workers, render, started)
        finally:
            q.close()
            worker_log.setLevel(level)
    echo(f"done in {time.monotonic() - started:.1f} s; the demo server is stopped and its data removed")


def _run(
    q: TaskQueue,
    echo: Callable[[str], None],
    count: int,
    workers: int,
    render: Callable[[TaskQueue], str],
    started: float,
) -> None:
    @q.task(name="demo.resize")
    def resize(image: str, width: int) -> str:
        current_task().wait(random.uniform(0.05, 0.25))  # the "work"
        return f"{image}@{width}px"

    @q.task(name="demo.urgent", queue="high")
    def urgent() -> str:
        return "handled first"

    @q.task(name="demo.remind")
    def remind(text: str) -> str:
        return f"reminder: {text}"

    @q.task(name="demo.flaky", max_retries=3)
    def flaky() -> str:
        attempt = current_task().attempt
        if attempt < 3:
            raise ConnectionError(f"upstream not ready (attempt {attempt})")
        return f"succeeded on attempt {attempt}"

    @q.task(name="demo.broken", max_retries=1)
    def broken(value: str) -> float:
        return float(value)

    echo(f"taskqueue demo: embedded server at {q.url}")
    echo(f"1. sending {count} resize tasks in one round trip, then 4 more")
    handles = q.enqueue_many([resize.s(f"image-{i}.png", 640) for i in range(1, count + 1)])
    extra = {
        "urgent (high queue, sent last)": urgent.delay(),
        "remind (delayed 1 s)": remind.apply_async(args=("stand up",), delay=1.0),
        "flaky (fails twice, retried)": flaky.delay(),
        "broken (always fails)": broken.delay("n/a"),
    }
    echo(f"2. starting {workers} worker threads")
    t0 = time.time()
    q.start_workers(workers)
    labelled = [(f"resize #{i}", h) for i, h in enumerate(handles, 1)] + list(extra.items())
    finished = []
    for label, handle in labelled:
        try:
            outcome = repr(handle.result(timeout=30))
        except TaskFailed as exc:
            outcome = f"{exc.status}: {exc.error_type}: {exc.error_message}"
        record = handle.record()
        at = ((record.finished_ms or 0) / 1000.0) - t0
        finished.append((at, label, record.attempts, outcome))
    echo("3. outcomes, in the order they finished")
    for at, label, attempts, outcome in sorted(finished):
        echo(f"   +{max(at, 0):5.2f}s  {label:<32} tries {attempts}  {outcome}")
    q.stop_workers()
    echo("4. status")
    echo("\n".join("   " + line for line in render(q).splitlines()))
    dead = q.dead_letters()
    echo(f"5. dead letters: {len(dead)} (inspect with `taskqueue dead list`, retry with `dead requeue`)")
    for d in dead:
        echo(f"   {d.name} {d.args}: {d.reason}")
