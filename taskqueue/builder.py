"""``TaskQueueBuilder``: settings in code, one call at a time, for those who prefer it
to files. Each call is one more layer on top of the files and the environment,
so ``TaskQueueBuilder().initial_workers(4).build()`` and
``TaskQueue.from_settings(workers={"initial_count": 4})`` end in the same
validated ``Settings``; an invalid combination is reported by ``build()``
in one ``ConfigurationError`` that names the builder call each bad value came from.

``build()`` starts nothing: ``q.start_workers()`` starts the workers and, when
the settings enable them, the scheduler and the autoscaler, exactly as for a
queue from ``from_settings``. (Workers started before the tasks are registered
would refuse the tasks they do not know.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from taskqueue.config import Settings, load
from taskqueue.queue import TaskQueue
from taskqueue.registry import TaskRegistry


def _number(value: Any, what: str, *, whole: bool = False) -> Any:
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if whole else "a number"
        raise TypeError(f"{what} must be {kind}, got {value!r}")
    return value


class TaskQueueBuilder:
    """Collects settings, then ``build()`` connects and returns a ``TaskQueue``.

    ``path`` and ``env`` choose the settings file and environment section as in
    ``TaskQueue.from_settings``; builder calls override them.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        env: str | None = None,
        registry: TaskRegistry | None = None,
        data_dir: str | None = None,
    ) -> None:
        if url is not None and not isinstance(url, str):
            raise TypeError(f"url must be a string such as 'redis://localhost:6379/0', got {url!r}")
        if registry is not None and not isinstance(registry, TaskRegistry):
            raise TypeError(f"registry must be a TaskRegistry, got {type(registry).__name__}")
        self._path = path
        self._env = env
        self._registry = registry
        self._data_dir = data_dir
        self._layers: list[tuple[Mapping[str, Any], str]] = []
        if url is not None:
            self._add("TaskQueueBuilder(url)", redis={"url": url})

    def __repr__(self) -> str:
        calls = ", ".join(source.removeprefix("TaskQueueBuilder.") for _, source in self._layers)
        return f"<TaskQueueBuilder {calls or '(defaults)'}>"

    def _add(self, source: str, **sections: Any) -> TaskQueueBuilder:
        self._layers.append((sections, source))
        return self

    # -- settings ------------------------------------------------------------------
    def initial_workers(self, count: int) -> TaskQueueBuilder:
        """Worker threads that ``q.start_workers()`` starts (``workers.initial_count``)."""
        _number(count, "initial_workers(count)", whole=True)
        return self._add("TaskQueueBuilder.initial_workers()", workers={"initial_count": count})

    def auto_register_tasks(self, enabled: bool = True) -> TaskQueueBuilder:
        """Accept every ``Task`` subclass the process defines (off: only tasks registered on the queue)."""
        if not isinstance(enabled, bool):
            raise TypeError(f"auto_register_tasks(enabled) must be True or False, got {enabled!r}")
        return self._add("TaskQueueBuilder.auto_register_tasks()", auto_register=enabled)

    def with_scheduler(
        self, *, tick_interval: float | None = None, max_tasks_per_tick: int | None = None
    ) -> TaskQueueBuilder:
        """Run the scheduler thread (periodic tasks) beside the workers: ``q.start_workers()`` starts it.

        A process without workers starts it with ``q.start_scheduler()``.
        """
        values: dict[str, Any] = {"enabled": True}
        if tick_interval is not None:
            values["tick_interval"] = _number(tick_interval, "with_scheduler(tick_interval)")
        if max_tasks_per_tick is not None:
            values["max_tasks_per_tick"] = _number(
                max_tasks_per_tick, "with_scheduler(max_tasks_per_tick)", whole=True
            )
        return self._add("TaskQueueBuilder.with_scheduler()", scheduler=values)

    def with_autoscaler(
        self,
        min_workers: int | None = None,
        max_workers: int | None = None,
        *,
        scale_up_threshold: float | None = None,
        scale_down_threshold: float | None = None,
        scale_up_count: int | None = None,
        scale_down_count: int | None = None,
        cooldown_seconds: float | None = None,
    ) -> TaskQueueBuilder:
        """Let the autoscaler move the thread count between ``min_workers`` and ``max_workers``.

        ``q.start_workers()`` starts it with the workers (``workers.initial_count`` must
        lie in the range); nothing starts at ``build()``.
        """
        values: dict[str, Any] = {"enabled": True}
        given = {
            "min_workers": (min_workers, True),
            "max_workers": (max_workers, True),
            "scale_up_threshold": (scale_up_threshold, False),
            "scale_down_threshold": (scale_down_threshold, False),
            "scale_up_count": (scale_up_count, True),
            "scale_down_count": (scale_down_count, True),
            "cooldown_seconds": (cooldown_seconds, False),
        }
        for name, (value, whole) in given.items():
            if value is not None:
                values[name] = _number(value, f"with_autoscaler({name})", whole=whole)
        return self._add("TaskQueueBuilder.with_autoscaler()", autoscaler=values)

    def queues(self, priorities: Mapping[str, int] | None = None, /, **more: int) -> TaskQueueBuilder:
        """Add queues or change priorities: ``.queues(reports=3)`` or ``.queues({"eu-west": 2})``.

        The default queues (high 10, default 5, low 1) stay unless re-prioritised.
        """
        if priorities is not None and not isinstance(priorities, Mapping):
            raise TypeError(f"queues() takes a mapping of name -> priority, got {type(priorities).__name__}")
        table = {**(priorities or {}), **more}
        if not table:
            raise ValueError("queues() needs at least one name=priority, e.g. .queues(reports=3)")
        for name, priority in table.items():
            if not isinstance(name, str):
                raise TypeError(f"queue names must be strings, got {name!r}")
            _number(priority, f"queues({name}=...) priority", whole=True)
        return self._add("TaskQueueBuilder.queues()", queues=table)

    def worker_queues(self, *names: str) -> TaskQueueBuilder:
        """The queues this process's workers serve (default: all), highest priority first."""
        if not names or not all(isinstance(n, str) for n in names):
            raise TypeError(f"worker_queues() takes one or more queue names, got {names!r}")
        return self._add("TaskQueueBuilder.worker_queues()", workers={"queues": list(names)})

    def configure(self, **sections: Mapping[str, Any]) -> TaskQueueBuilder:
        """Any other setting, by section: ``.configure(tasks={"max_retries": 5})``."""
        return self._add("TaskQueueBuilder.configure()", **sections)

    # -- result ----------------------------------------------------------------------
    def settings(self) -> Settings:
        """The validated settings the queue will get; raises ConfigurationError listing every problem."""
        return load(self._path, self._env, None, self._layers)

    def build(self) -> TaskQueue:
        """Connect and return the queue; nothing is started here.

        Register your tasks first, then call ``q.start_workers()`` (``workers.initial_count``
        threads, plus the scheduler and the autoscaler when enabled) or use ``with q.running():``.
        """
        return TaskQueue(settings=self.settings(), registry=self._registry, data_dir=self._data_dir)
