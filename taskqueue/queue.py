"""``TaskQueue``: the object users hold. It wires the parts together and
delegates: Redis work to the broker, execution to the worker pool, time to
the scheduler. It keeps no task state of its own."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

import redis

from taskqueue.broker import EnqueueRequest, RedisBroker, create_client, mask_url
from taskqueue.config import Settings, load_settings
from taskqueue.errors import TaskNotFound
from taskqueue.handle import DeadLetter, TaskHandle
from taskqueue.hooks import H, Hook, Hooks
from taskqueue.identifiers import check_queue, valid_task_id
from taskqueue.periodic import (
    MISSED_POLICIES,
    PeriodicDefinition,
    PeriodicTask,
    make_schedule,
    periodic_list,
)
from taskqueue.registry import TaskDefinition, TaskRegistry, check_name
from taskqueue.registry import registry as default_registry
from taskqueue.retry import WaitStrategy
from taskqueue.scheduler import Scheduler
from taskqueue.serialization import Envelope, Signer, encode
from taskqueue.services import Services
from taskqueue.task import Signature, Task, TaskFunction, definition_of, function_definition
from taskqueue.worker import WorkerPool

if TYPE_CHECKING:
    from taskqueue.autoscaler import Autoscaler, ScalingDecision
    from taskqueue.health import HealthStatus
    from taskqueue.metrics import TaskQueueMetrics

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("taskqueue.queue")


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{what} must be a number of seconds >= 0 or a timedelta, got {value!r}")
    return float(value)


def _eta_ms(eta: datetime | None) -> int:
    if eta is None:
        return 0
    if not isinstance(eta, datetime):
        raise TypeError(f"eta must be a datetime, got {type(eta).__name__}")
    if eta.tzinfo is None or eta.utcoffset() is None:
        raise ValueError(
            f"eta={eta.isoformat()} has no timezone; pass an aware datetime, "
            "e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
        )
    return max(1, int(eta.timestamp() * 1000))


class TaskQueue:
    """A connection to one namespace of one Redis, plus this process's workers."""

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        registry: TaskRegistry | None = None,
        data_dir: str | None = None,
    ) -> None:
        if url is not None and not isinstance(url, str):
            raise TypeError(f"url must be a string such as 'redis://localhost:6379/0', got {url!r}")
        self.settings = settings or load_settings()
        # auto_register off: the queue knows only the tasks registered on it (q.task, q.register),
        # not every Task subclass the process happens to define.
        if registry is None:
            registry = default_registry if self.settings.auto_register else TaskRegistry()
        self.registry = registry  # not `registry or ...`: an empty TaskRegistry is falsy (len 0)
        url = url or self.settings.redis.url
        self._server = None
        if not url:
            from taskqueue import embedded

            self._server = embedded.acquire(data_dir)
            url = self._server.url
        self.url = url
        self.broker = RedisBroker(create_client(url, self.settings.redis), self.settings, url)
        self.signer = Signer(self.settings.security.signing_keys)
        self._pool: WorkerPool | None = None
        self._closed = False
        self._extensions: dict[str, Any] = {}
        #: Lifecycle hooks (DESIGN 9): ``q.on(event, fn)``; see taskqueue.hooks.
        self.hooks = Hooks()
        #: Services running beside the workers (scheduler, autoscaler, monitor, metrics servers).
        self.services = Services()
        self._periodic: dict[str, PeriodicDefinition] = {}
        self._periodic_origin: dict[str, Any] = {}

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

    def __repr__(self) -> str:
        workers = self._pool.count() if self._pool else 0
        return f"<TaskQueue {mask_url(self.url)} namespace={self.settings.redis.namespace} workers={workers}>"

    def _repr_html_(self) -> str:
        from taskqueue.display import queue_html

        return queue_html(self)

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

    # -- defining tasks ------------------------------------------------------------
    @overload
    def task(self, fn: F) -> TaskFunction[Any, Any]: ...
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
    ) -> Callable[[F], TaskFunction[Any, Any]]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_wait: WaitStrategy | None = None,
        retry_on: Any = None,
        dont_retry_on: Any = None,
    ) -> Any:
        """Register a function as a task: ``@q.task`` or ``@q.task(name=..., queue=...)``."""

        def decorate(target: Callable[..., Any]) -> TaskFunction[Any, Any]:
            self._check_queue(queue)
            definition = function_definition(
                target,
                name=name,
                queue=queue,
                max_retries=self.settings.tasks.max_retries if max_retries is None else max_retries,
                timeout=timeout,
                retry_wait=retry_wait,
                retry_on=retry_on,
                dont_retry_on=dont_retry_on,
            )
            self.registry.register(definition)
            return TaskFunction(target, self, definition)

        return decorate(fn) if fn is not None else decorate

    def register(self, task_class: type[Task]) -> type[Task]:
        """Register a Task subclass explicitly (for a registry other than the default)."""
        self.registry.register(definition_of(task_class))
        return task_class

    # -- periodic tasks --------------------------------------------------------------
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
        schedule = make_schedule(every, cron, tz)
        if missed not in MISSED_POLICIES:
            raise ValueError(f"missed={missed!r}: use one of {', '.join(map(repr, MISSED_POLICIES))}")
        grace_s = _seconds(grace, "grace")
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple or list, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict, got {type(kwargs).__name__}")
        if name is not None:
            check_name(name, "periodic task name")
        if queue is not None:
            self._check_queue(queue)

        def decorate(target: Any) -> Any:
            if isinstance(target, TaskFunction):
                if target.queue is not self:
                    raise ValueError(
                        f"{target.name} is a task of another TaskQueue; use that queue's periodic()"
                    )
                task_fn: TaskFunction[Any, Any] | None = target
                signature: Signature | Task = target.s(*args, **(kwargs or {}))
                task_name = target.name
            elif isinstance(target, type) and issubclass(target, Task):
                if args:
                    raise TypeError(f"{target.__qualname__} takes its fields as kwargs=, not args=")
                if target.name not in self.registry:
                    self.register(target)
                task_fn, signature, task_name = None, target(**(kwargs or {})), target.name
            elif callable(target):
                task_fn = self.task(target, name=name, queue=queue or "default")
                signature, task_name = task_fn.s(*args, **(kwargs or {})), task_fn.name
            else:
                raise TypeError(f"@periodic decorates a function, a task or a Task subclass, got {target!r}")
            request = self._request(signature, queue=queue)
            definition = PeriodicDefinition(
                name=name or task_name,
                task_name=task_name,
                schedule=schedule,
                queue=request.queue,
                args=tuple(args),
                kwargs=dict(kwargs or {}),
                payload=request.payload,
                signature=request.signature,
                max_retries=request.max_retries,
                missed=missed,
                grace=grace_s,
            )
            self._add_periodic(definition, task_fn.fn if task_fn is not None else target)
            return task_fn if task_fn is not None else target

        return decorate(fn) if fn is not None else decorate

    def _add_periodic(self, definition: PeriodicDefinition, origin: Any) -> None:
        old = self._periodic.get(definition.name)
        if old is not None and (
            old.task_name != definition.task_name or self._periodic_origin[old.name] is origin
        ):
            raise ValueError(
                f"periodic task name {definition.name!r} is already used (for task {old.task_name!r}); "
                "pass name= to give each periodic entry its own name"
            )
        # Same name and task from a new function object: a notebook cell or module run
        # again; the new definition replaces the old one.
        self._periodic_origin[definition.name] = origin
        self._periodic[definition.name] = definition
        scheduler = self._extensions.get("scheduler")
        if scheduler is not None and scheduler.running:
            scheduler.sync(remove_missing=False)  # a definition added while running (a notebook cell)

    def periodic_definitions(self) -> dict[str, PeriodicDefinition]:
        """The periodic tasks this process declares (what its scheduler can enqueue)."""
        return dict(self._periodic)

    def periodic_tasks(self) -> list[PeriodicTask]:
        """Every periodic task registered in Redis (from any process), by next run, then
        this process's definitions that no scheduler has registered yet."""
        docs, due = self.broker.periodic_state()
        return periodic_list(docs, due, self._periodic)

    # -- scheduler -------------------------------------------------------------------
    @property
    def scheduler(self) -> Scheduler:
        """This queue's scheduler (created on first use; ``start_scheduler()`` runs it)."""
        scheduler = self._extensions.get("scheduler")
        if scheduler is None:
            scheduler = Scheduler(self.broker, self.periodic_definitions, self.settings.scheduler)
            self._extensions["scheduler"] = scheduler
        return scheduler

    def start_scheduler(self) -> Scheduler:
        """Run the scheduler thread in this process (idempotent).

        It registers this process's periodic definitions in Redis and removes
        stored ones the code no longer declares, then ticks until
        ``stop_scheduler()`` or ``close()``.
        """
        if self._closed:
            raise RuntimeError("this TaskQueue is closed; create a new one to start a scheduler")
        scheduler = self.scheduler
        scheduler.start()
        return scheduler

    def stop_scheduler(self, timeout: float | None = 10.0) -> None:
        """Stop this process's scheduler thread; periodic state stays in Redis."""
        scheduler = self._extensions.get("scheduler")
        if scheduler is not None:
            scheduler.stop(timeout)

    # -- enqueueing ----------------------------------------------------------------
    def _check_queue(self, queue: str) -> str:
        return check_queue(self.settings, queue)

    def _request(
        self,
        item: Task | Signature | TaskHandle,
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
    ) -> EnqueueRequest:
        if isinstance(item, Task):
            definition = self.registry.get(type(item).name)
            args: tuple[Any, ...] = ()
            kwargs = item.payload()
            options: dict[str, Any] = {}
        elif isinstance(item, Signature):
            definition = self.registry.get(item.name)
            args, kwargs, options = item.args, item.kwargs, item.options
            queue = queue or item.queue
            delay = delay if delay is not None else item.delay
            eta = eta or item.eta
        elif isinstance(item, TaskFunction):
            raise TypeError(
                f"enqueue takes a call, not the task itself: use {item.name}.s(...) or .delay(...)"
            )
        else:
            raise TypeError(
                f"enqueue takes a Task instance or a signature (fn.s(...)), got {type(item).__name__}"
            )
        if delay is not None and eta is not None:
            raise ValueError("pass delay or eta, not both")
        queue = self._check_queue(queue or definition.queue)
        delay_s = _seconds(delay, "delay")
        max_retries = options.get("max_retries", definition.retry.max_retries)
        envelope = Envelope(definition.name, tuple(args), dict(kwargs), options)
        payload = encode(envelope, max_bytes=self.settings.tasks.max_payload_bytes)
        if task_id is not None and not valid_task_id(task_id):
            raise ValueError(
                f"task_id must be a non-empty string of at most 128 characters "
                f"without braces, got {task_id!r}"
            )
        return EnqueueRequest(
            id=task_id or os.urandom(16).hex(),  # as random as uuid4, a fraction of the cost
            name=definition.name,
            queue=queue,
            payload=payload,
            signature=self.signer.sign(payload),
            max_retries=int(max_retries),
            delay_ms=-1 if delay_s is None else int(delay_s * 1000),
            eta_ms=_eta_ms(eta),
        )

    def enqueue(
        self,
        item: Task | Signature,
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
    ) -> TaskHandle:
        """Send one task; nothing is written if its payload is invalid or too large."""
        req = self._request(item, queue=queue, delay=delay, eta=eta, task_id=task_id)
        (written,) = self.broker.enqueue([req])
        if not written:
            raise ValueError(f"a task with id {req.id!r} exists already; ids must be unique")
        self._nudge_scheduler([req])
        return TaskHandle(self, req.id, req.name)

    def schedule(
        self,
        item: Task | Signature,
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

    def enqueue_many(self, items: Iterable[Task | Signature]) -> list[TaskHandle]:
        """Send many tasks in one round trip; all are written or none (checked first)."""
        requests = [self._request(item) for item in items]
        self.broker.enqueue(requests)
        self._nudge_scheduler(requests)
        return [TaskHandle(self, r.id, r.name) for r in requests]

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

        return mapping.run(
            self,
            fn,
            iterable,
            queue=queue,
            progress=progress,
            timeout=timeout,
            return_exceptions=return_exceptions,
        )

    def _nudge_scheduler(self, requests: Sequence[EnqueueRequest]) -> None:
        """Wake this process's scheduler early for a delayed task due before its next tick."""
        scheduler = self._extensions.get("scheduler")
        if scheduler is None or not scheduler.running:
            return
        delays = [r.delay_ms / 1000 if r.eta_ms == 0 else r.eta_ms / 1000 - time.time() for r in requests]
        delays = [d for r, d in zip(requests, delays, strict=True) if r.delay_ms >= 0 or r.eta_ms > 0]
        if delays:
            scheduler.nudge(min(delays))

    def get(self, task_id: str) -> TaskHandle:
        """A handle for a task id obtained elsewhere (another process, a log line)."""
        record = self.broker.get_task(task_id)
        if record is None:
            raise TaskNotFound(f"task {task_id} is not in Redis (never existed, purged, or expired)")
        return TaskHandle(self, task_id, record.name)

    # -- workers ---------------------------------------------------------------------
    def start_workers(self, count: int | None = None, *, queues: Sequence[str] | None = None) -> None:
        """Run ``count`` worker threads in this process (more if already running)."""
        count = self.settings.workers.initial_count if count is None else count
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an int >= 1, got {count!r}")
        if self._pool is None:
            served = list(queues or self.settings.workers.queues or self.settings.queues_by_priority())
            for q in served:
                self._check_queue(q)
            served.sort(key=lambda q: -self.settings.queues[q])
            # Fail here, clearly, when Redis is unreachable: not later in a background thread.
            self.broker.producer_call(
                "loading scripts to start workers", lambda: self.broker.scripts.load_all(self.broker.client)
            )
            self._warn_if_evicting()
            self._pool = WorkerPool(
                self.broker, self.registry, self.settings, served, self.signer, hooks=self.hooks
            )
        try:
            self._pool.start(count)
        except redis.exceptions.RedisError as exc:
            raise self.broker.wrap_error(exc, "registering the worker process") from exc
        if self.settings.scheduler.enabled:
            self.start_scheduler()
        if self.settings.autoscaler.enabled and self.autoscaler is None:
            self.start_autoscaler()

    def _warn_if_evicting(self) -> None:
        """Say so at start-up when Redis may evict our keys under memory pressure."""
        policy = self.broker.eviction_policy()
        if policy is not None and policy != "noeviction":
            log.warning(
                "Redis maxmemory-policy is %r: when Redis reaches maxmemory it may evict queued "
                "tasks, results and dead letters. Set maxmemory-policy noeviction (producers then "
                "get BrokerError when memory is full, and nothing is lost)",
                policy,
            )

    def worker_count(self) -> int:
        return self._pool.count() if self._pool else 0

    def scale_workers(self, count: int) -> None:
        if self._pool is None:
            self.start_workers(count)
        else:
            self._pool.resize(count)

    def stop_workers(self, timeout: float | None = None) -> bool:
        """Stop taking work and wait for running tasks (up to the grace period)."""
        if self._pool is None:
            return True
        pool, self._pool = self._pool, None
        return pool.stop(timeout)

    @property
    def pool(self) -> WorkerPool | None:
        return self._pool

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
        from taskqueue.autoscaler import Autoscaler, autoscaler_settings

        config = autoscaler_settings(
            self.settings.autoscaler, min_workers=min_workers, max_workers=max_workers, **settings
        )
        if self._pool is None:
            self.start_workers(config.min_workers, queues=queues)
        self.stop_autoscaler()  # an earlier one, or the one start_workers started for autoscaler.enabled
        scaler = Autoscaler(self.broker, lambda: self._pool, config, on_decision=on_decision)
        self.services.add(scaler)
        return scaler.start()

    def stop_autoscaler(self) -> None:
        """Stop adjusting the pool; the worker threads stay as they are."""
        scaler = self.autoscaler
        if scaler is not None:
            self.services.remove(scaler)
            scaler.stop()

    @property
    def autoscaler(self) -> Autoscaler | None:
        from taskqueue.autoscaler import Autoscaler

        return self.services.get(Autoscaler)

    def get_metrics(self) -> TaskQueueMetrics:
        """Counters, latency percentiles and workers of the whole namespace, from Redis
        (every worker process on the server), in two round trips."""
        from taskqueue.metrics import collect

        return collect(self)

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
        from taskqueue.health import check

        return check(
            self, expected_workers=expected_workers, max_pending_age=max_pending_age, max_latency=max_latency
        )

    # -- dead letters and administration ----------------------------------------------
    def _queues_or(self, queue: str | None) -> list[str]:
        return [self._check_queue(queue)] if queue is not None else self.settings.queues_by_priority()

    def dead_letters(self, queue: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Dead tasks, oldest first, with their reason and last error."""
        out: list[DeadLetter] = []
        for q in self._queues_or(queue):
            ids = self.broker.dead_ids(q, limit)
            records = self.broker.get_tasks(ids, history=True) if ids else []
            expired = [i for i, r in zip(ids, records, strict=True) if r is None]
            self.broker.forget_dead(q, expired)
            out += [DeadLetter.from_record(r) for r in records if r is not None]
        return out

    def requeue_dead(self, task_id: str | None = None, *, queue: str | None = None) -> int:
        """Put one dead task (or all, or all of a queue) back in its queue, attempts reset."""
        if task_id is not None:
            record = self.broker.get_task(task_id)
            if record is None or record.status != "DEAD":
                raise TaskNotFound(f"task {task_id} is not in the dead-letter queue")
            return self.broker.requeue_dead(record.queue, task_id)
        return sum(self.broker.requeue_dead(q) for q in self._queues_or(queue))

    def purge_dead(self, queue: str | None = None) -> int:
        return sum(self.broker.purge_dead(q) for q in self._queues_or(queue))

    def purge(self, queue: str) -> int:
        """Delete every pending task of a queue; returns how many were removed."""
        return self.broker.purge_queue(self._check_queue(queue))

    def pending(self, queue: str | None = None) -> dict[str, int]:
        return self.broker.queue_lengths(self._queues_or(queue))

    def pause(self, queue: str) -> None:
        """Workers (in every process) stop taking from this queue until resume()."""
        self.broker.pause(self._check_queue(queue), True)

    def resume(self, queue: str) -> None:
        self.broker.pause(self._check_queue(queue), False)

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
        from taskqueue.monitor import Monitor

        if self._closed:
            raise RuntimeError("this TaskQueue is closed; create a new one to monitor")
        return Monitor(self, refresh=refresh, **options)

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop this process's workers and helpers, close connections, release the server."""
        if self._closed:
            return
        self._closed = True
        self.services.stop_all()
        for ext in reversed(list(self._extensions.values())):
            stop = getattr(ext, "stop", None)
            if stop is not None:
                stop()
        self.stop_workers()
        with contextlib.suppress(Exception):
            self.broker.client.close()
            self.broker.client.connection_pool.disconnect()
        if self._server is not None:
            from taskqueue import embedded

            embedded.release(self._server)
            self._server = None

    def definition(self, name: str) -> TaskDefinition:
        return self.registry.get(name)
