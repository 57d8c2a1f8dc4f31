"""``@q.periodic(...)``: declaring the periodic tasks of this process.

Declaring is local: a ``PeriodicDefinition`` (schedule, arguments, the
payload encoded and signed once) is kept by name here, and a scheduler
registers the definitions in Redis when it starts (``taskqueue.periodic``
holds the schedules and the stored state; ``taskqueue.scheduler`` runs them).
A definition added while this process's scheduler runs (a notebook cell) is
handed to it at once through ``on_added``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from taskqueue.identifiers import check_queue
from taskqueue.periodic import MISSED_POLICIES, PeriodicDefinition, make_schedule
from taskqueue.producer import TaskSender, seconds
from taskqueue.registry import TaskRegistry, check_name
from taskqueue.task import Signature, Task, TaskFunction, definition_of

#: Registers a plain function as a task: (function, task name or None, queue) -> the task.
DefineTask = Callable[[Callable[..., Any], str | None, str], TaskFunction[Any, Any]]


class PeriodicRegistry:
    """The periodic definitions this process declares, by entry name."""

    def __init__(
        self,
        sender: TaskSender,
        registry: TaskRegistry,
        define_task: DefineTask,
        on_added: Callable[[], None],
    ) -> None:
        self.sender = sender
        self.registry = registry
        self.define_task = define_task
        self.on_added = on_added
        self._definitions: dict[str, PeriodicDefinition] = {}
        self._origins: dict[str, Any] = {}

    def definitions(self) -> dict[str, PeriodicDefinition]:
        return dict(self._definitions)

    def decorator(
        self,
        *,
        every: float | timedelta | None,
        cron: str | None,
        tz: str | None,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any] | None,
        queue: str | None,
        name: str | None,
        missed: str,
        grace: float | timedelta | None,
    ) -> Callable[[Any], Any]:
        """Check the options (see ``TaskQueue.periodic``) and return the decorator that declares."""
        schedule = make_schedule(every, cron, tz)
        if missed not in MISSED_POLICIES:
            raise ValueError(f"missed={missed!r}: use one of {', '.join(map(repr, MISSED_POLICIES))}")
        grace_s = seconds(grace, "grace")
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple or list, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict, got {type(kwargs).__name__}")
        if name is not None:
            check_name(name, "periodic task name")
        if queue is not None:
            check_queue(self.sender.settings, queue)
        call_kwargs = dict(kwargs or {})

        def declare(target: Any) -> Any:
            task_fn, signature = self._signature(target, tuple(args), call_kwargs, name, queue)
            request = self.sender.request(signature, queue=queue)
            self._add(
                PeriodicDefinition(
                    name=name or request.name,
                    task_name=request.name,
                    schedule=schedule,
                    queue=request.queue,
                    args=tuple(args),
                    kwargs=call_kwargs,
                    payload=request.payload,
                    signature=request.signature,
                    max_retries=request.max_retries,
                    missed=missed,
                    grace=grace_s,
                ),
                task_fn.fn if task_fn is not None else target,
            )
            return task_fn if task_fn is not None else target

        return declare

    def _signature(
        self,
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
        queue: str | None,
    ) -> tuple[TaskFunction[Any, Any] | None, Signature | Task]:
        """The task a decorated object stands for, and its call: a task function, a Task
        subclass (``kwargs`` are its fields) or a plain function (registered as a task)."""
        if isinstance(target, TaskFunction):
            if target.sender is not self.sender:
                raise ValueError(f"{target.name} is a task of another TaskQueue; use that queue's periodic()")
            return target, target.s(*args, **kwargs)
        if isinstance(target, type) and issubclass(target, Task):
            if args:
                raise TypeError(f"{target.__qualname__} takes its fields as kwargs=, not args=")
            if target.name not in self.registry:
                self.registry.register(definition_of(target))
            return None, target(**kwargs)
        if callable(target):
            task_fn = self.define_task(target, name, queue or "default")
            return task_fn, task_fn.s(*args, **kwargs)
        raise TypeError(f"@periodic decorates a function, a task or a Task subclass, got {target!r}")

    def _add(self, definition: PeriodicDefinition, origin: Any) -> None:
        old = self._definitions.get(definition.name)
        if old is not None and (old.task_name != definition.task_name or self._origins[old.name] is origin):
            raise ValueError(
                f"periodic task name {definition.name!r} is already used (for task {old.task_name!r}); "
                "pass name= to give each periodic entry its own name"
            )
        # Same name and task from a new function object: a notebook cell or module run
        # again; the new definition replaces the old one.
        self._origins[definition.name] = origin
        self._definitions[definition.name] = definition
        self.on_added()


__all__ = ["DefineTask", "PeriodicRegistry"]
