"""Handles of workflows: what ``chain``, ``group`` and ``chord`` return when sent.

A ``WorkflowHandle`` knows every task of its workflow (``tasks``), one handle
per step or member (``handles``: a ``TaskHandle``, or the handle of a nested
workflow), and the tasks whose results make up its result (``tails``, arranged
by ``shape``). It needs only the producer port, like ``TaskHandle``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from taskqueue.errors import TaskFailed
from taskqueue.outcome import error_of, missing, result_of
from taskqueue.status import FINAL_STATES, TaskStatus
from taskqueue.workflow.inputs import build

if TYPE_CHECKING:
    from taskqueue.broker import TaskRecord
    from taskqueue.broker.ports import Producer
    from taskqueue.handle import TaskHandle

#: Statuses read per round trip while waiting, and the longest block on one task.
_WINDOW = 1000
_BLOCK = 1.0
#: Statuses cancel() stops for good (a task that started is asked to stop).
_UNSTARTED = frozenset({"PENDING", "SCHEDULED", "RETRYING", "WAITING"})


class WorkflowHandle:
    """A sent workflow: its id, its tasks, its progress, its result, and cancel()."""

    def __init__(
        self, producer: Producer, workflow_id: str, kind: str, parts: list[Any], tasks: list[TaskHandle]
    ) -> None:
        self.producer = producer
        self.id = workflow_id
        self.kind = kind
        #: One handle per step (chain) or member (group): a TaskHandle or a workflow's.
        self.handles = parts
        #: Every task of the workflow, in the order they were written.
        self.tasks = tasks
        #: The tasks whose results make up this workflow's result, and how (see compile).
        self.tails: list[TaskHandle] = []
        self.shape: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} of {len(self.tasks)} task(s)>"

    @property
    def progress(self) -> tuple[int, int]:
        """(tasks finished, tasks in all), whatever their outcome."""
        statuses = self.producer.task_statuses([t.id for t in self.tasks])
        return sum(1 for s in statuses if s in FINAL_STATES), len(self.tasks)

    @property
    def status(self) -> TaskStatus:
        """SUCCEEDED once every task whose result is the workflow's did; the first failed,
        dead or cancelled one's status once one ended so; else RUNNING when some task
        runs or ran, WAITING or PENDING otherwise."""
        statuses = [
            TaskStatus(s) if s else TaskStatus.CANCELLED
            for s in self.producer.task_statuses([t.id for t in self.tasks])
        ]
        tails = {t.id for t in self.tails}
        bad = [
            s
            for t, s in zip(self.tasks, statuses, strict=True)
            if s.final and s != TaskStatus.SUCCEEDED and t.id in tails
        ]
        if bad:
            return bad[0]
        if all(s == TaskStatus.SUCCEEDED for t, s in zip(self.tasks, statuses, strict=True) if t.id in tails):
            return TaskStatus.SUCCEEDED
        if any(s in (TaskStatus.RUNNING, TaskStatus.SUCCEEDED, TaskStatus.RETRYING) for s in statuses):
            return TaskStatus.RUNNING
        return TaskStatus.WAITING if TaskStatus.WAITING in statuses else TaskStatus.PENDING

    def cancel(self) -> int:
        """Cancel every task of the workflow that has not started (waiting ones included:
        they never run); running ones are asked to stop. The number that will never run."""
        # the last written first: a dependent cancelled before its dependency is counted
        # here, not by the dependency's cancellation spreading to it
        before = self.producer.cancel_many([t.id for t in reversed(self.tasks)])
        return sum(1 for s in before if s in _UNSTARTED)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow's result: a chain's is its last step's, a group's the list
        of its members', a chord's its body's. Raises the ``TaskFailed`` of the task that
        failed (a member whose failure cancelled the rest is named, not the cancellation);
        ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ids = [t.id for t in self.tails]
        records: list[TaskRecord | None] = [None] * len(ids)
        unfinished = list(range(len(ids)))
        while unfinished:
            window = unfinished[:_WINDOW]
            statuses = self.producer.task_statuses([ids[i] for i in window])
            done = [i for i, s in zip(window, statuses, strict=True) if s in FINAL_STATES or not s]
            if done:
                for i, record in zip(done, self.producer.get_tasks([ids[i] for i in done]), strict=True):
                    if record is None:
                        raise missing(ids[i])
                    if record.status != "SUCCEEDED":
                        raise self._failure(record)
                    records[i] = record
                unfinished = [i for i in unfinished if records[i] is None]
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"{self.kind} {self.id}: {len(unfinished)} of {len(ids)} task(s) had not finished "
                    f"after {timeout:g} s"
                )
            head = ids[unfinished[0]]
            record = self.producer.watch(head)
            if record is not None and not record.final:
                self.producer.wait_done(head, _BLOCK if remaining is None else min(_BLOCK, remaining))
        return build(self.shape, [result_of(r) for r in records if r is not None])

    def _failure(self, record: TaskRecord) -> TaskFailed:
        """The error for a task that did not succeed: the failure of the task that caused it."""
        cause = None
        if record.cause and record.cause != record.id:
            cause = self.producer.get_task(record.cause)
        if cause is not None and cause.final and cause.status != "SUCCEEDED":
            error = error_of(cause)
            error.add_note(
                f"{self.kind} {self.id}: task {cause.id} ({cause.name}) ended {cause.status}, so task "
                f"{record.id} ({record.name}) was {record.status.lower()}: {record.reason}"
            )
            return error
        error = error_of(record)
        error.add_note(f"{self.kind} {self.id}: task {record.id} ({record.name}) ended {record.status}")
        return error


class GroupHandle(WorkflowHandle):
    """A sent group: ``results(timeout)`` is the list of its members' results, in order."""

    def results(self, timeout: float | None = None) -> list[Any]:
        value = self.result(timeout)
        return list(value)


class ChainHandle(WorkflowHandle):
    """A sent chain: ``result()`` is its last step's result."""


class ChordHandle(WorkflowHandle):
    """A sent chord: ``result()`` is its body's; ``header`` is the group's handle. A chord
    whose member failed never calls back: ``result()`` raises that member's TaskFailed."""

    @property
    def header(self) -> GroupHandle:
        return self.handles[0]

    @property
    def body(self) -> Any:
        return self.handles[1]


__all__ = ["ChainHandle", "ChordHandle", "GroupHandle", "WorkflowHandle"]
