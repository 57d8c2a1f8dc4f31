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
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from taskqueue.broker.ports import ProgressStore
from taskqueue.errors import TaskFailed, TaskNotFound
from taskqueue.identifiers import check_queue
from taskqueue.outcome import error_of, result_of
from taskqueue.progress import decode as decode_progress
from taskqueue.status import FINAL_STATES
from taskqueue.task import Signature, TaskFunction

if TYPE_CHECKING:
    from taskqueue.broker import TaskRecord
    from taskqueue.broker.ports import Producer
    from taskqueue.config import Settings
    from taskqueue.handle import TaskHandle
    from taskqueue.registry import TaskRegistry

#: Sends calls in one round trip and returns their handles (the queue's ``enqueue_many``).
Send = Callable[[Sequence[Signature]], list["TaskHandle"]]

#: Unfinished tasks whose status one sweep reads.
WINDOW = 256
#: Shortest time between two sweeps, so a large map does not load Redis.
MIN_SWEEP_SECONDS = 0.1
#: Longest a sweep waits on the oldest unfinished task before looking at the others.
MAX_BLOCK_SECONDS = 1.0
#: How often the bar reads the progress running tasks reported (one round trip).
PROGRESS_SECONDS = 0.5

_MISSING = object()


def signatures(
    registry: TaskRegistry, settings: Settings, fn: Any, items: Iterable[Any], queue: str | None
) -> tuple[str, list[Signature]]:
    """The task's name and one call per item, each checked against the task's parameters."""
    if isinstance(fn, TaskFunction):
        name, check = fn.name, fn.check_arguments
    elif isinstance(fn, str):
        name, check = registry.get(fn).name, None
    else:
        raise TypeError(
            f"map takes a task (a function decorated with @q.task) or a registered task name, got {fn!r}"
        )
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"map takes an iterable of arguments (a list of values or of tuples), got {items!r}")
    if queue is not None:
        check_queue(settings, queue)
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
    send: Send,
    producer: Producer,
    name: str,
    calls: list[Signature],
    *,
    any_worker: Callable[[], bool],
    progress: bool,
    timeout: float | None,
    return_exceptions: bool,
) -> list[Any]:
    """Send ``calls`` (built by ``signatures``) and wait for their outcomes, in order.

    ``any_worker`` says whether a worker runs anywhere; when none does, a warning says
    why the bar does not move.
    """
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    if not calls:
        return []
    if not any_worker():
        warnings.warn(
            "q.map: no worker is running (q.start_workers(n) here, or a worker process); "
            "the tasks wait in their queue until one starts",
            stacklevel=3,
        )
    handles = send(calls)
    return wait(
        producer, handles, label=name, progress=progress, timeout=timeout, return_exceptions=return_exceptions
    )


class _Outcomes:
    """The outcomes collected so far, in the items' order, and which items are unfinished."""

    def __init__(self, producer: Producer, ids: list[str], label: str, return_exceptions: bool) -> None:
        self.producer = producer
        self.ids = ids
        self.label = label
        self.return_exceptions = return_exceptions
        self.results: list[Any] = [_MISSING] * len(ids)
        self.unfinished = list(range(len(ids)))

    def sweep(self) -> tuple[int, TaskFailed | TaskNotFound | None]:
        """Read the oldest unfinished tasks' statuses and collect those that finished: how many
        did, and the first failure to raise (None with ``return_exceptions``)."""
        window = self.unfinished[:WINDOW]
        statuses = self.producer.task_statuses([self.ids[i] for i in window])
        done = [i for i, status in zip(window, statuses, strict=True) if status in FINAL_STATES or not status]
        if not done:
            return 0, None
        records = self.producer.get_tasks([self.ids[i] for i in done])
        failure: TaskFailed | TaskNotFound | None = None
        for i, record in zip(done, records, strict=True):
            error = self._collect(i, record)
            if error is not None and failure is None and not self.return_exceptions:
                failure = error
        self.unfinished = [i for i in self.unfinished if self.results[i] is _MISSING]
        return len(done), failure

    def _collect(self, i: int, record: TaskRecord | None) -> TaskFailed | TaskNotFound | None:
        error: TaskFailed | TaskNotFound
        if record is None:
            error = TaskNotFound(
                f"task {self.ids[i]} (item {i}) is no longer in Redis: purged, or its result expired"
            )
        elif record.status == "SUCCEEDED":
            self.results[i] = result_of(record)
            return None
        else:
            error = error_of(record)
        error.add_note(f"q.map: item {i} of {len(self.ids)} ({self.label})")
        self.results[i] = error
        return error

    def partial(self, reader: ProgressStore) -> float:
        """The sum of what the oldest unfinished tasks reported (done / total, each at most 1)."""
        window = self.unfinished[:WINDOW]
        total = 0.0
        for raw in reader.read_progress([self.ids[i] for i in window]):
            reported = decode_progress(raw)
            if reported is not None and reported.fraction is not None:
                total += reported.fraction
        return min(total, float(len(window)))

    def block(self, remaining: float | None) -> None:
        """Wait for the oldest unfinished task's done signal (only a watched task gets one)."""
        head = self.ids[self.unfinished[0]]
        record = self.producer.watch(head)
        if record is not None and not record.final:
            block = MAX_BLOCK_SECONDS if remaining is None else min(MAX_BLOCK_SECONDS, remaining)
            self.producer.wait_done(head, block)


def wait(
    producer: Producer,
    handles: list[TaskHandle],
    *,
    label: str = "",
    progress: bool = True,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> list[Any]:
    """The outcomes of ``handles`` in their order (see the module docstring)."""
    from tqdm.auto import tqdm

    outcomes = _Outcomes(producer, [h.id for h in handles], label, return_exceptions)
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = tqdm(total=len(handles), desc=label or "tasks", unit="task", disable=not progress, leave=True)
    reader = producer if progress and isinstance(producer, ProgressStore) else None
    finished, read_at = 0, 0.0
    try:
        while outcomes.unfinished:
            swept_at = time.monotonic()
            done, failure = outcomes.sweep()
            finished += done
            if reader is not None and swept_at - read_at >= PROGRESS_SECONDS:
                # the bar counts finished tasks plus the fractions running ones reported
                read_at = swept_at
                bar.n = finished + outcomes.partial(reader)
                bar.refresh()
            else:
                bar.update(done)
            if failure is not None:
                raise failure
            if not outcomes.unfinished:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"q.map: {len(outcomes.unfinished)} of {len(handles)} tasks had not finished "
                    f"after {timeout:g} s"
                )
            if not done:
                outcomes.block(remaining)
            pause = MIN_SWEEP_SECONDS - (time.monotonic() - swept_at)
            if pause > 0:
                time.sleep(pause if remaining is None else max(0.0, min(pause, remaining)))
    except BaseException:
        _cancel(producer, [outcomes.ids[i] for i in outcomes.unfinished])
        raise
    finally:
        bar.close()
    return outcomes.results


def _cancel(producer: Producer, task_ids: list[str]) -> None:
    """Best effort: the caller is already raising, so a failure here only warns."""
    try:
        producer.cancel_many(task_ids)
    except Exception as exc:  # noqa: BLE001 - never hide the error being raised
        warnings.warn(f"q.map could not cancel {len(task_ids)} unfinished task(s): {exc}", stacklevel=3)
