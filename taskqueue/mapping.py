"""``q.map(fn, items)``: run a task over many inputs and collect the results in order.

All tasks are sent in one round trip (``enqueue_many``). Waiting costs little
whatever the number of tasks: each sweep reads the status of at most
``WINDOW`` unfinished tasks (the oldest first) in one pipeline, reads the
records of those that finished in one more, and sweeps at most every
``MIN_SWEEP_SECONDS``. Between sweeps it blocks on the done signal of the
oldest unfinished task (``watch`` first: only a watched task is signalled), so
a short map returns as soon as its last task ends.

Like ``concurrent.futures.Executor.map``, an error, a timeout or an interrupt
(the notebook's stop button) cancels the tasks that have not finished: the
pending ones never run, running ones are asked to stop (``current_task()``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from taskqueue.errors import TaskFailed, TaskNotFound
from taskqueue.handle import error_of
from taskqueue.serialization import loads
from taskqueue.status import FINAL_STATES
from taskqueue.task import Signature, TaskFunction

if TYPE_CHECKING:
    from taskqueue.handle import TaskHandle
    from taskqueue.queue import TaskQueue

#: Unfinished tasks whose status one sweep reads.
WINDOW = 256
#: Shortest time between two sweeps, so a large map does not load Redis.
MIN_SWEEP_SECONDS = 0.1
#: Longest a sweep waits on the oldest unfinished task before looking at the others.
MAX_BLOCK_SECONDS = 1.0

_MISSING = object()


def _signatures(
    q: TaskQueue, fn: Any, items: Iterable[Any], queue: str | None
) -> tuple[str, list[Signature]]:
    if isinstance(fn, TaskFunction):
        name, check = fn.name, fn.check_arguments
    elif isinstance(fn, str):
        name, check = q.registry.get(fn).name, None
    else:
        raise TypeError(
            f"map takes a task (a function decorated with @q.task) or a registered task name, got {fn!r}"
        )
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"map takes an iterable of arguments (a list of values or of tuples), got {items!r}")
    if queue is not None:
        q._check_queue(queue)
    signatures = []
    for index, item in enumerate(items):
        args = tuple(item) if isinstance(item, tuple) else (item,)
        if check is not None:
            try:
                check(args, {})
            except TypeError as exc:
                raise TypeError(f"item {index} ({item!r}) does not fit the task: {exc}") from None
        signatures.append(Signature(name, args, {}, queue))
    return name, signatures


def run(
    q: TaskQueue,
    fn: Any,
    items: Iterable[Any],
    *,
    queue: str | None,
    progress: bool,
    timeout: float | None,
    return_exceptions: bool,
) -> list[Any]:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    name, signatures = _signatures(q, fn, items, queue)
    if not signatures:
        return []
    if q.worker_count() == 0 and not q.broker.live_workers():
        warnings.warn(
            "q.map: no worker is running (q.start_workers(n) here, or a worker process); "
            "the tasks wait in their queue until one starts",
            stacklevel=3,
        )
    handles = q.enqueue_many(signatures)
    return wait(
        q, handles, label=name, progress=progress, timeout=timeout, return_exceptions=return_exceptions
    )


def wait(
    q: TaskQueue,
    handles: list[TaskHandle],
    *,
    label: str = "",
    progress: bool = True,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> list[Any]:
    """The outcomes of ``handles`` in their order (see the module docstring)."""
    from tqdm.auto import tqdm

    broker = q.broker
    ids = [h.id for h in handles]
    results: list[Any] = [_MISSING] * len(ids)
    unfinished = list(range(len(ids)))
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = tqdm(total=len(ids), desc=label or "tasks", unit="task", disable=not progress, leave=True)
    try:
        while unfinished:
            swept_at = time.monotonic()
            window = unfinished[:WINDOW]
            statuses = broker.task_statuses([ids[i] for i in window])
            done = [
                i for i, status in zip(window, statuses, strict=True) if status in FINAL_STATES or not status
            ]
            if done:
                records = broker.get_tasks([ids[i] for i in done])
                failure: TaskFailed | TaskNotFound | None = None
                for i, record in zip(done, records, strict=True):
                    if record is None:
                        error: Any = TaskNotFound(
                            f"task {ids[i]} (item {i}) is no longer in Redis: purged, or its result expired"
                        )
                    elif record.status == "SUCCEEDED":
                        results[i] = loads(record.result or b"\xc0", what=f"result of task {ids[i]}")
                        continue
                    else:
                        error = error_of(record)
                    error.add_note(f"q.map: item {i} of {len(ids)} ({label})")
                    results[i] = error
                    if failure is None and not return_exceptions:
                        failure = error
                bar.update(len(done))
                if failure is not None:
                    raise failure
                unfinished = [i for i in unfinished if results[i] is _MISSING]
                if not unfinished:
                    break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"q.map: {len(unfinished)} of {len(ids)} tasks had not finished after {timeout:g} s"
                )
            if not done:
                # Only a watched task gets a done signal: register, then block on it.
                head = ids[unfinished[0]]
                record = broker.watch(head)
                if record is not None and not record.final:
                    block = MAX_BLOCK_SECONDS if remaining is None else min(MAX_BLOCK_SECONDS, remaining)
                    broker.wait_done(head, block)
            pause = MIN_SWEEP_SECONDS - (time.monotonic() - swept_at)
            if pause > 0:
                time.sleep(pause if remaining is None else max(0.0, min(pause, remaining)))
    except BaseException:
        _cancel(q, [ids[i] for i in unfinished if results[i] is _MISSING])
        raise
    finally:
        bar.close()
    return results


def _cancel(q: TaskQueue, task_ids: list[str]) -> None:
    """Best effort: the caller is already raising, so a failure here only warns."""
    try:
        q.broker.cancel_many(task_ids)
    except Exception as exc:  # noqa: BLE001 - never hide the error being raised
        warnings.warn(f"q.map could not cancel {len(task_ids)} unfinished task(s): {exc}", stacklevel=3)
