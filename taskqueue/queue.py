"""``TaskQueue``: the object users hold. It wires the parts together and
delegates: sending to the producer side (``taskqueue.producer``), Redis work to
the broker, execution to the worker pool, time to the scheduler. It keeps no
task state of its own, and the helpers it wires get the port and the settings
they need, never the queue itself."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, overload

from taskqueue.admin import QueueAdmin
from taskqueue.autoscaler import Autoscaler
from taskqueue.broker import RedisBroker, create_client, mask_url
from taskqueue.config import Settings, load_settings
from taskqueue.declaring import TaskDeclarations
from taskqueue.handle import TaskHandle
from taskqueue.hooks import H, Hook, Hooks
from taskqueue.local_scheduler import LocalScheduler
from taskqueue.local_workers import LocalWorkers
from taskqueue.periodic import PeriodicTask, periodic_list
from taskqueue.producer import Sendable, TaskSender
from taskqueue.registry import TaskRegistry
from taskqueue.registry import registry as default_registry
from taskqueue.scheduler import Scheduler
from taskqueue.serialization import Signer
from taskqueue.services import Services
from taskqueue.task import TaskFunction
from taskqueue.worker import WorkerPool
from taskqueue.workflow import Workflow, WorkflowHandle

if TYPE_CHECKING:
    from taskqueue.autoscaler import ScalingDecision
    from taskqueue.health import HealthStatus

log = logging.getLogger("taskqueue.queue")


class TaskQueue(TaskDeclarations, QueueAdmin):
    """A connection to one namespace of one Redis, plus this process's workers.

    ``overrides`` are setting sections laid over ``settings`` (or over the dynaconf
    layers when ``settings`` is None), as in ``from_settings``:
    ``TaskQueue("memory://", workers={"initial_count": 2})``. An unknown section or
    an invalid value raises a ConfigurationError that names it.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        registry: TaskRegistry | None = None,
        data_dir: str | None = None,
        **overrides: Any,
    ) -> None:
        if url is not None and not isinstance(url, str):
            raise TypeError(f"url must be a string such as 'redis://localhost:6379/0', got {url!r}")
        if settings is None:
            settings = load_settings(**overrides)
        elif overrides:
            settings = settings.replace(**overrides).validate()
        # auto_register off: the queue knows only the tasks registered on it (q.task, q.register),
        # not every Task subclass the process happens to define.
        self._settings = settings
        if registry is None:  # not `registry or ...`: an empty TaskRegistry is falsy (len 0)
            registry = default_registry if settings.auto_register else TaskRegistry()
        url = url or settings.redis.url
        self._server = None
        if not url:
            from taskqueue import embedded

            self._server = embedded.acquire(data_dir)
            url = self._server.url
        self.url = url
        self.broker = RedisBroker(create_client(url, settings.redis), settings, url)
        self.signer = Signer(settings.security.signing_keys)
        #: Lifecycle hooks (DESIGN 9): ``q.on(event, fn)``; see taskqueue.hooks.
        self.hooks = Hooks()
        self._workers = LocalWorkers(self.broker, registry, lambda: self.settings, self.signer, self.hooks)
        self._closed = False
        #: Services running beside the workers (scheduler, autoscaler, monitor, metrics servers).
        self.services = Services()
        self._scheduling = LocalScheduler(
            self.broker, self.services, self.periodic_definitions, lambda: self.settings
        )
        self._sender = TaskSender(
            self.broker, registry, settings, self.signer, self.hooks, after_send=self._scheduling.nudge
        )
        TaskDeclarations.__init__(self, registry, self._sender, self._scheduling.declared)
        QueueAdmin.__init__(self, self.broker, self.broker, settings)

    @classmethod
    def from_settings(
        cls,
        path: str | None = None,
        env: str | None = None,
        *,
        registry: TaskRegistry | None = None,
        data_dir: str | None = None,
        **overrides: Any,
    ) -> TaskQueue:
        """Build from the dynaconf layers (files, TASK_QUEUE_ENV section, variables).

        ``overrides`` are sections laid over every layer: ``from_settings(workers={"initial_count": 2})``.
        Raises one ConfigurationError listing every invalid setting. ``TaskQueueBuilder``
        ends in the same validated settings.
        """
        return cls(settings=load_settings(path, env, **overrides), registry=registry, data_dir=data_dir)

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """New settings (the CLI applies its options this way); the producer side follows."""
        self._settings = self._sender.settings = settings

    def __repr__(self) -> str:
        namespace, workers = self.settings.redis.namespace, self.worker_count()
        return f"<TaskQueue {mask_url(self.url)} namespace={namespace} workers={workers}>"

    def _repr_html_(self) -> str:
        from taskqueue.display import queue_html

        return queue_html(self.broker, self.settings, self.url, self.worker_count())

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hooks -----------------------------------------------------------------------
    @overload
    def on(self, event: str) -> Callable[[H], H]: ...
    @overload
    def on(self, event: str, fn: H) -> H: ...
    def on(self, event: str, fn: H | None = None) -> H | Callable[[H], H]:
        """Call ``fn(TaskEvent)`` on ``event``; without ``fn``, a decorator: ``@q.on("task_failed")``."""
        if fn is None:
            return self.hooks.on(event)
        return self.hooks.on(event, fn)

    def off(self, event: str, fn: Hook) -> bool:
        """Stop calling ``fn`` on ``event``; False when it was not registered."""
        return self.hooks.off(event, fn)

    # -- periodic tasks --------------------------------------------------------------
    def periodic_tasks(self) -> list[PeriodicTask]:
        """Every periodic task registered in Redis (from any process), by next run, then
        this process's definitions that no scheduler has registered yet."""
        docs, due = self.broker.periodic_state()
        return periodic_list(docs, due, self.periodic_definitions(), self.broker.paused_periodic())

    # -- scheduler -------------------------------------------------------------------
    @property
    def scheduler(self) -> Scheduler:
        """This queue's scheduler (created on first use; ``start_scheduler()`` runs it)."""
        return self._scheduling.get()

    def start_scheduler(self) -> Scheduler:
        """Run the scheduler thread in this process (idempotent).

        It registers this process's periodic definitions in Redis and removes
        stored ones the code no longer declares, then ticks until
        ``stop_scheduler()`` or ``close()``.
        """
        if self._closed:
            raise RuntimeError("this TaskQueue is closed; create a new one to start a scheduler")
        scheduler = self._scheduling.get()
        scheduler.start()
        return scheduler

    def stop_scheduler(self, timeout: float | None = 10.0) -> None:
        """Stop this process's scheduler thread; periodic state stays in Redis."""
        self._scheduling.stop(timeout)

    # -- enqueueing ----------------------------------------------------------------
    def enqueue(
        self,
        item: Sendable,
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
        depends_on: Sequence[Any] | None = None,
        on_dependency_failure: str = "cancel",
    ) -> TaskHandle:
        """Send one task; nothing is written if its payload is invalid or too large.

        ``depends_on`` / ``on_dependency_failure``: as on ``apply_async`` (it waits for them).
        A workflow (``chain``, ``group``, ``chord``) is sent whole and returns its handle
        (``q.send_workflow`` is the typed spelling)."""
        if isinstance(item, Workflow):
            if eta is not None or task_id is not None:
                raise ValueError("a workflow takes queue= and delay=, not eta= or task_id=")
            if depends_on is not None:
                raise ValueError("a workflow takes no depends_on: start it with a chain instead")
            return self.send_workflow(item, queue=queue, delay=delay)  # type: ignore[return-value]
        if depends_on is None and on_dependency_failure == "cancel":
            return self._sender.enqueue(item, queue=queue, delay=delay, eta=eta, task_id=task_id)
        return self._sender.enqueue(
            item,
            queue=queue,
            delay=delay,
            eta=eta,
            task_id=task_id,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
        )

    def send_workflow(
        self, workflow: Workflow, *, queue: str | None = None, delay: float | timedelta | None = None
    ) -> WorkflowHandle:
        """Send a chain, group or chord, written whole or not at all; its handle."""
        if not isinstance(workflow, Workflow):
            raise TypeError(f"send_workflow takes a chain, group or chord, got {type(workflow).__name__}")
        return self._sender.enqueue_workflow(workflow, queue=queue, delay=delay)

    def schedule(
        self,
        item: Sendable,
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
    ) -> TaskHandle:
        """Enqueue to run later: after ``delay`` or at ``eta`` (an aware datetime)."""
        if delay is None and eta is None:
            raise ValueError("schedule() needs delay= or eta=")
        return self.enqueue(item, queue=queue, delay=delay, eta=eta, task_id=task_id)

    def enqueue_many(self, items: Iterable[Sendable]) -> list[TaskHandle]:
        """Send many tasks in one round trip; all are written or none (checked first)."""
        return self._sender.enqueue_many(items)

    def map(
        self,
        fn: TaskFunction[Any, Any] | str,
        iterable: Iterable[Any],
        *,
        queue: str | None = None,
        progress: bool = True,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Run a task once per item and return the results in the items' order.

        A tuple item is the positional arguments (``q.map(add, [(1, 2), (3, 4)])``), any
        other item the single argument (wrap a tuple argument: ``[((1, 2),)]``). Every task is
        sent in one round trip, then a progress bar (``tqdm.auto``: a widget in a notebook,
        text in a terminal) follows them. The first failure raises its ``TaskFailed`` with the
        remote traceback, unless ``return_exceptions`` puts the errors in the list instead;
        ``TimeoutError`` after ``timeout`` seconds. On an error, a timeout or an interrupt the
        unfinished tasks are cancelled (running ones are asked to stop).
        """
        from taskqueue import mapping

        name, calls = mapping.signatures(self.registry, self.settings, fn, iterable, queue)
        return mapping.run(
            self.enqueue_many,
            self.broker,
            name,
            calls,
            any_worker=lambda: self.worker_count() > 0 or bool(self.broker.live_workers()),
            progress=progress,
            timeout=timeout,
            return_exceptions=return_exceptions,
        )

    # -- workers ---------------------------------------------------------------------
    def start_workers(self, count: int | None = None, *, queues: Sequence[str] | None = None) -> None:
        """Run ``count`` worker threads in this process (more if already running)."""
        self._workers.start(count, queues)
        if self.settings.scheduler.enabled:
            self.start_scheduler()
        if self.settings.autoscaler.enabled and self.autoscaler is None:
            self.start_autoscaler()

    def worker_count(self) -> int:
        return self._workers.count()

    def scale_workers(self, count: int) -> None:
        self._workers.resize(count)

    def stop_workers(self, timeout: float | None = None) -> bool:
        """Stop taking work and wait for running tasks (up to the grace period)."""
        return self._workers.stop(timeout)

    def _set_workers(self, count: int) -> None:
        """Run ``count`` worker threads here; 0 stops them (the monitor's control)."""
        if count:
            self.scale_workers(count)
        else:
            self.stop_workers()

    @property
    def pool(self) -> WorkerPool | None:
        return self._workers.pool

    @contextlib.contextmanager
    def running(self, workers: int | None = None, **kwargs: Any) -> Iterator[TaskQueue]:
        """``with q.running(workers=4):`` start workers, stop them gracefully on exit."""
        self.start_workers(workers, **kwargs)
        try:
            yield self
        finally:
            self.stop_workers()

    # -- autoscaler, metrics, health ----------------------------------------------------
    def start_autoscaler(
        self,
        min_workers: int | None = None,
        max_workers: int | None = None,
        *,
        queues: Sequence[str] | None = None,
        on_decision: Callable[[ScalingDecision], None] | None = None,
        **settings: Any,
    ) -> Autoscaler:
        """Scale this process's worker threads with the load (see ``taskqueue.autoscaler``).

        Values not given come from ``settings.autoscaler`` (scale_up_threshold,
        scale_down_threshold, scale_up_count, scale_down_count, cooldown_seconds,
        consecutive_signals, tick_interval). Starts ``min_workers`` threads if no
        workers run yet; replaces an autoscaler already running. ``on_decision`` is
        called with each ``ScalingDecision`` (from, to, why).
        """
        from taskqueue.autoscaler import autoscaler_settings

        config = autoscaler_settings(
            self.settings.autoscaler, min_workers=min_workers, max_workers=max_workers, **settings
        )
        if self.pool is None:
            self.start_workers(config.min_workers, queues=queues)
        self.stop_autoscaler()  # an earlier one, or the one start_workers started for autoscaler.enabled
        scaler = Autoscaler(self.broker, lambda: self.pool, config, on_decision=on_decision)
        self.services.add(scaler)
        return scaler.start()

    def stop_autoscaler(self) -> None:
        """Stop adjusting the pool; the worker threads stay as they are."""
        scaler = self.services.get(Autoscaler)
        if scaler is not None:
            self.services.remove(scaler)
            scaler.stop()

    @property
    def autoscaler(self) -> Autoscaler | None:
        return self.services.get(Autoscaler)

    def health_check(
        self,
        *,
        expected_workers: int | None = None,
        max_pending_age: float = 300.0,
        max_latency: float = 0.25,
    ) -> HealthStatus:
        """Check Redis, workers, scheduler, autoscaler and queues; never raises for a
        Redis outage (that is reported as an unhealthy ``redis`` component).

        ``expected_workers``: live worker threads below it make ``workers`` degraded.
        ``max_pending_age``: seconds the oldest pending task may wait before ``queues``
        is degraded. ``max_latency``: seconds a PING may take before ``redis`` is.
        """
        from taskqueue.health import health_check

        return health_check(
            self.broker,
            self.settings,
            url=self.broker.url,
            pool=self.pool,
            scheduler=self.services.get(Scheduler),
            autoscaler=self.services.get(Autoscaler),
            expected_workers=expected_workers,
            max_pending_age=max_pending_age,
            max_latency=max_latency,
        )

    # -- notebooks ----------------------------------------------------------------------
    def monitor(self, refresh: float = 2.0, **options: Any) -> Any:
        """A live ipywidgets dashboard of this namespace: queue depths, throughput and
        failures, workers, scheduled tasks and dead letters, with controls (see
        ``taskqueue.monitor.Monitor`` for ``options``). It refreshes itself every
        ``refresh`` seconds from a background thread that stops when the widget is closed
        or this queue is."""
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            raise ImportError(
                "q.monitor() needs ipywidgets, which is not installed: pip install 'taskqueue[notebook]'"
            ) from None
        from taskqueue.monitor import Monitor, ThisProcess

        if self._closed:
            raise RuntimeError("this TaskQueue is closed; create a new one to monitor")
        here = ThisProcess(
            worker_id=lambda: self.pool.id if self.pool is not None else None,
            worker_count=self.worker_count,
            set_workers=self._set_workers,
            periodic_definitions=self.periodic_definitions,
            scheduler_running=lambda: self._scheduling.running() is not None,
            autoscaler_running=lambda: bool(getattr(self.autoscaler, "running", False)),
        )
        return Monitor(
            self.broker, self.settings, self.services, here, url=self.url, refresh=refresh, **options
        )

    def dashboard(self, **options: Any) -> Any:
        """Serve the web dashboard from a thread of this process on 127.0.0.1 (a free port)
        and show it inline in a notebook; its buttons work while a cell runs. Stopped by
        ``.stop()`` or ``close()``. ``options``: see ``taskqueue.dashboard.notebook``."""
        try:
            from taskqueue.dashboard import Backend, notebook
        except ImportError as exc:  # flask is an extra
            raise ImportError(f"q.dashboard() needs Flask: pip install 'taskqueue[flask]' ({exc})") from None
        if self._closed:
            raise RuntimeError("this TaskQueue is closed; create a new one to serve its dashboard")
        return notebook.start(Backend.of(self), self.services, **options)

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop this process's workers and helpers, close connections, release the server."""
        if self._closed:
            return
        self._closed = True
        self.services.stop_all()
        self.stop_workers()
        with contextlib.suppress(Exception):
            self.broker.client.close()
            self.broker.client.connection_pool.disconnect()
        if self._server is not None:
            from taskqueue import embedded

            embedded.release(self._server)
            self._server = None


__all__ = ["TaskQueue"]
