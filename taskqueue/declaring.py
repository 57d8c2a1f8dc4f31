"""Declaring what this process runs: ``@q.task`` functions, ``Task`` classes and
``@q.periodic`` entries.

``TaskDeclarations`` registers definitions in the task registry and hands
each task function the producer side to send its calls through; it needs
the registry and the ``TaskSender`` (whose settings give the queue names and
the default retries), never the queue. ``TaskQueue`` is one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, overload

from taskqueue.identifiers import check_queue
from taskqueue.periodic import PeriodicDefinition
from taskqueue.periodic_registration import PeriodicRegistry
from taskqueue.producer import TaskSender
from taskqueue.registry import TaskDefinition, TaskRegistry
from taskqueue.retry import WaitStrategy
from taskqueue.task import P, R, Task, TaskFunction, definition_of, function_definition


class TaskDeclarations:
    """The tasks and periodic entries a process declares (see the module docstring)."""

    def __init__(
        self, registry: TaskRegistry, sender: TaskSender, on_periodic_added: Callable[[], None]
    ) -> None:
        self.registry = registry
        self._sender = sender
        self._periodic = PeriodicRegistry(
            sender,
            registry,
            lambda fn, name, queue: self._define(fn, name=name, queue=queue),
            on_periodic_added,
        )

    @overload
    def task(self, fn: Callable[P, R]) -> TaskFunction[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_wait: WaitStrategy | None = None,
        retry_on: Any = None,
        dont_retry_on: Any = None,
        unique_for: float | None = None,
        debounce: float | None = None,
        rate_limit: str | None = None,
        concurrency: int | None = None,
        limit_by: str | None = None,
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_wait: WaitStrategy | None = None,
        retry_on: Any = None,
        dont_retry_on: Any = None,
        unique_for: float | None = None,
        debounce: float | None = None,
        rate_limit: str | None = None,
        concurrency: int | None = None,
        limit_by: str | None = None,
    ) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
        """Register a function as a task: ``@q.task`` or ``@q.task(name=..., queue=...)``.

        Flow control (README, "Flow control"): ``unique_for`` (s), ``debounce`` (s),
        ``rate_limit`` ("N/s", "N/m", "N/h"), ``concurrency`` (N), ``limit_by`` (the
        argument whose value gets its own bucket or pool), all held across processes.

        The task keeps the function's parameter and return types: ``add.delay(1, 2)`` and
        ``add(1, 2)`` are checked by a type checker as calls of ``add``.
        """

        def decorate(target: Callable[P, R]) -> TaskFunction[P, R]:
            return self._define(
                target,
                name=name,
                queue=queue,
                max_retries=max_retries,
                timeout=timeout,
                retry_wait=retry_wait,
                retry_on=retry_on,
                dont_retry_on=dont_retry_on,
                limits={
                    "unique_for": unique_for,
                    "debounce": debounce,
                    "rate_limit": rate_limit,
                    "concurrency": concurrency,
                    "limit_by": limit_by,
                },
            )

        return decorate(fn) if fn is not None else decorate

    def _define(
        self,
        target: Callable[P, R],
        *,
        name: str | None,
        queue: str,
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_wait: WaitStrategy | None = None,
        retry_on: Any = None,
        dont_retry_on: Any = None,
        limits: dict[str, Any] | None = None,
    ) -> TaskFunction[P, R]:
        settings = self._sender.settings
        check_queue(settings, queue)
        definition = function_definition(
            target,
            name=name,
            queue=queue,
            max_retries=settings.tasks.max_retries if max_retries is None else max_retries,
            timeout=timeout,
            retry_wait=retry_wait,
            retry_on=retry_on,
            dont_retry_on=dont_retry_on,
            **(limits or {}),
        )
        self.registry.register(definition)
        return TaskFunction(target, self._sender, definition)

    def register(self, task_class: type[Task]) -> type[Task]:
        """Register a Task subclass explicitly (for a registry other than the default)."""
        self.registry.register(definition_of(task_class))
        return task_class

    def definition(self, name: str) -> TaskDefinition:
        return self.registry.get(name)

    def periodic(
        self,
        fn: Any = None,
        *,
        every: float | timedelta | None = None,
        cron: str | None = None,
        tz: str | None = None,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        name: str | None = None,
        missed: str = "run_once",
        grace: float | timedelta | None = None,
    ) -> Any:
        """Run a task on a schedule: ``@q.periodic(every=timedelta(minutes=5))`` or
        ``@q.periodic(cron="0 9 * * mon-fri", tz="Europe/Paris")``.

        Decorates a plain function (registered as a task, under ``name`` when
        given), a ``@q.task`` function or a ``Task`` subclass (``kwargs`` are its
        fields), and returns it, so several ``@q.periodic`` lines can stack on
        one task with different arguments and names. ``name`` names the
        periodic entry (default: the task name). ``every`` slots are anchored at
        registration (first run one interval after the first scheduler starts);
        ``cron`` is evaluated in ``tz`` (default UTC).

        Missed runs (no scheduler was running when slots fell due): with
        ``missed="run_once"`` (default) they collapse into one run as soon as a
        scheduler is back; with ``missed="skip"`` a run later than ``grace``
        (default: half the interval, at most 60 s) is dropped and the next
        slot runs on time. Only processes running ``start_scheduler()`` enqueue
        periodic runs; any number of them may run, each slot is enqueued once.
        """
        decorate = self._periodic.decorator(
            every=every,
            cron=cron,
            tz=tz,
            args=args,
            kwargs=kwargs,
            queue=queue,
            name=name,
            missed=missed,
            grace=grace,
        )
        return decorate(fn) if fn is not None else decorate

    def periodic_definitions(self) -> dict[str, PeriodicDefinition]:
        """The periodic tasks this process declares (what its scheduler can enqueue)."""
        return self._periodic.definitions()


__all__ = ["TaskDeclarations"]
