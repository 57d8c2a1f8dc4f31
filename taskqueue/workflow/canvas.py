"""``chain``, ``group`` and ``chord``: workflows built from task calls (DESIGN 10).

A workflow is a value, like a ``Signature``: nothing is sent until
``.delay()``, ``.apply_async(queue=, delay=)`` or ``q.enqueue(workflow)``.

- ``chain(a.s(1), b.s(), c.s())``: each step starts once the previous one
  succeeded, and receives its result as its first argument. A step may be a
  task, a group or a chord (a step after a group receives the list of the
  group's results).
- ``group(a.s(1), a.s(2))`` (or ``group(a.s(x) for x in xs)``): members run in
  parallel; its result is the list of theirs, in member order. A member is a
  task or a chain.
- ``chord(header, body)``: ``body`` runs once every member of ``header`` (a
  group, or a list of members) succeeded, with the list of their results, in
  member order, before its own arguments. A chord whose member failed never
  calls back.

Which tasks wait for which is decided in Redis, by the scripts that store
outcomes (``taskqueue/broker/scripts/_lib_workflow.lua``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from taskqueue.task import Signature, Task, TaskFunction

if TYPE_CHECKING:
    from taskqueue.workflow.handles import WorkflowHandle


class WorkflowSender(Protocol):
    """What sends a workflow (the queue's producer side, ``TaskSender``)."""

    def enqueue_workflow(
        self, workflow: Workflow, *, queue: str | None = None, delay: float | timedelta | None = None
    ) -> WorkflowHandle: ...


#: One step of a workflow: a task call, a Task instance, or a nested workflow.
Step = Any


class Workflow:
    """What ``chain``, ``group`` and ``chord`` have in common."""

    kind = "workflow"

    def delay(self) -> WorkflowHandle:
        """Send the workflow through the queue its tasks belong to (``apply_async()``)."""
        return self.apply_async()

    def apply_async(
        self, *, queue: str | None = None, delay: float | timedelta | None = None
    ) -> WorkflowHandle:
        """Send it: ``queue`` for every member that names none, ``delay`` before its first
        tasks start. Written whole or not at all."""
        sender = _sender_of(self)
        if sender is None:
            raise TypeError(
                f"this {self.kind} has no queue to send it through: build its tasks with "
                "fn.s(...) of a @q.task function, or send it with q.enqueue(workflow)"
            )
        return sender.enqueue_workflow(self, queue=queue, delay=delay)

    def steps(self) -> tuple[Step, ...]:
        raise NotImplementedError


class chain(Workflow):  # noqa: N801 - the name users know (Celery's, DESIGN 10)
    """Steps run one after the other, each result the first argument of the next."""

    kind = "chain"

    def __init__(self, *tasks: Step) -> None:
        if len(tasks) == 1 and _is_iterable(tasks[0]):
            tasks = tuple(tasks[0])
        if not tasks:
            raise ValueError("chain() needs at least one task, e.g. chain(fetch.s(url), parse.s())")
        for i, t in enumerate(tasks):
            _check_step(t, f"chain step {i}", allow=(group, chord, chain))
        self.tasks: tuple[Step, ...] = tasks

    def steps(self) -> tuple[Step, ...]:
        return self.tasks

    def __repr__(self) -> str:
        return "chain(" + ", ".join(_label(t) for t in self.tasks) + ")"


class group(Workflow):  # noqa: N801
    """Members run in parallel; the result is the list of theirs, in member order."""

    kind = "group"

    def __init__(self, *tasks: Step) -> None:
        if len(tasks) == 1 and _is_iterable(tasks[0]):
            tasks = tuple(tasks[0])
        if not tasks:
            raise ValueError("group() needs at least one task, e.g. group(resize.s(p) for p in paths)")
        for i, t in enumerate(tasks):
            _check_step(t, f"group member {i}", allow=(chain,))
        self.tasks: tuple[Step, ...] = tasks

    def steps(self) -> tuple[Step, ...]:
        return self.tasks

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return "group(" + ", ".join(_label(t) for t in self.tasks) + ")"


class chord(Workflow):  # noqa: N801
    """``body`` runs once every member of ``header`` succeeded, with their results."""

    kind = "chord"

    def __init__(self, header: group | Iterable[Step], body: Step) -> None:
        if not isinstance(header, group):
            if isinstance(header, Workflow) or not _is_iterable(header):
                raise TypeError(
                    f"chord's header is a group or a list of tasks, got {_label(header)}: "
                    "chord([a.s(1), a.s(2)], total.s())"
                )
            header = group(*header)
        _check_step(body, "chord body", allow=(chain,))
        self.header: group = header
        self.body: Step = body

    def steps(self) -> tuple[Step, ...]:
        return (self.header, self.body)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {_label(self.body)})"


def _is_iterable(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, dict, Workflow, Signature))


def _check_step(step: Any, where: str, allow: tuple[type, ...]) -> None:
    if isinstance(step, (Signature, Task, *allow)):
        return
    if isinstance(step, TaskFunction):
        raise TypeError(f"{where} is the task {step.name} itself: use {step.name}.s(...) for a call of it")
    if isinstance(step, Workflow):
        hint = {
            "group": "a group holds tasks and chains: put the inner members in the outer group, "
            "or the chord in a chain: chain(chord(...))",
            "chord": "a chord's body is a task or a chain: chain(chord(...), next.s())",
        }
        kind = "chord" if where == "chord body" else "group"
        raise TypeError(f"{where} is a {step.kind}; {hint[kind]}")
    raise TypeError(
        f"{where} must be a task call (fn.s(...)), a Task instance or a workflow, got {_label(step)}"
    )


def _label(step: Any) -> str:
    if isinstance(step, Signature):
        return f"{step.name}.s(...)"
    if isinstance(step, Workflow):
        return repr(step)
    return type(step).__name__


def _sender_of(workflow: Workflow) -> WorkflowSender | None:
    """The sender of the first task call that knows one (``fn.s(...)`` records its queue's)."""
    for step in workflow.steps():
        if isinstance(step, Workflow):
            found = _sender_of(step)
            if found is not None:
                return found
        elif isinstance(step, Signature) and hasattr(step.sender, "enqueue_workflow"):
            return step.sender
    return None


__all__ = ["Step", "Workflow", "WorkflowSender", "chain", "chord", "group"]
