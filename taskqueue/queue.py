"""``TaskQueue``: the object users hold. It wires the parts together and
delegates: Redis work to the broker, execution to the worker pool, time to
the scheduler. It keeps no task state of its own."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from taskqueue.broker import EnqueueRequest, RedisBroker, create_client, mask_url
from taskqueue.config import Settings, load_settings
from taskqueue.errors import ConfigurationError, TaskNotFound
from taskqueue.handle import DeadLetter, TaskHandle
from taskqueue.registry import TaskDefinition, TaskRegistry
from taskqueue.registry import registry as default_registry
from taskqueue.retry import WaitStrategy
from taskqueue.serialization import Envelope, Signer, encode
from taskqueue.task import Signature, Task, TaskFunction, definition_of, function_definition
from taskqueue.worker import WorkerPool

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


def _valid_task_id(task_id: object) -> bool:
    return isinstance(task_id, str) and 0 < len(task_id) <= 128 and not ({"{", "}"} & set(task_id))


def _valid_task_id(task_id: object) -> bool:
    return isinstance(task_id, str) and 0 < len(task_id) <= 128 and not ({"{", "}"} & set(task_id))


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
        self.registry = registry if registry is not None else default_registry
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

    @classmethod
    def from_settings(cls, path: str | None = None, env: str | None = None, **overrides: Any) -> TaskQueue:
        """Build from the dynaconf layers (files, TASK_QUEUE_ENV section, variables)."""
        return cls(settings=load_settings(path, env, **overrides))

    def __repr__(self) -> str:
        workers = self._pool.count() if self._pool else 0
        return f"<TaskQueue {mask_url(self.url)} namespace={self.settings.redis.namespace} workers={workers}>"

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # -- enqueueing ----------------------------------------------------------------
    def _check_queue(self, queue: str) -> str:
        if not isinstance(queue, str) or queue not in self.settings.queues:
            known = ", ".join(self.settings.queues_by_priority())
            raise ConfigurationError(
                f"unknown queue {queue!r}; configured queues are {known}. "
                f"Add it to settings as [queues.{queue}] priority = N"
            )
        return queue

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
        if task_id is not None and not _valid_task_id(task_id):
            raise ValueError(
                f"task_id must be a non-empty string of at most 128 characters "
                f"without braces, got {task_id!r}"
            )
        return EnqueueRequest(
            id=task_id or uuid.uuid4().hex,
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
        return [TaskHandle(self, r.id, r.name) for r in requests]

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
            broker = self.broker
            broker.producer_call("loading scripts", lambda: broker.scripts.load_all(broker.client))
            self._warn_if_evicting()
            self._pool = WorkerPool(self.broker, self.registry, self.settings, served, self.signer)
        self._pool.start(count)

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

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop this process's workers and helpers, close connections, release the server."""
        if self._closed:
            return
        self._closed = True
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
