"""The Redis broker: every Redis command taskqueue sends goes through here.

Each state transition of a task is one Lua script (see ``scripts/``), so it
is atomic and costs one round trip; a batch of them is one pipeline.
Producer calls retry transient connection errors with tenacity before they
raise ``BrokerError``; the worker-side calls raise at once and the worker
loop decides how to back off, so a worker never blocks inside a retry.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import tenacity

from taskqueue.broker.connection import mask_url
from taskqueue.broker.keys import Keys
from taskqueue.broker.scripts import Scripts
from taskqueue.config import Settings
from taskqueue.errors import BrokerError

log = logging.getLogger("taskqueue.broker")
T = TypeVar("T")

#: Errors after which the same command may succeed: the connection, not the command, failed.
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "DEAD", "CANCELLED"})


@dataclass(frozen=True, slots=True)
class Delivery:
    """One leased task, as handed to a worker thread."""

    id: str
    payload: bytes
    signature: str
    attempt: int
    token: str
    queue: str


@dataclass(frozen=True, slots=True)
class FetchResult:
    deliveries: list[Delivery]
    now_ms: int
    #: Earliest scheduled time or lease deadline (server ms), -1 when there is none.
    next_due_ms: int
    dropped_dead: int = 0


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    id: str
    name: str
    queue: str
    payload: bytes
    signature: str = ""
    max_retries: int = 3
    delay_ms: int = -1
    eta_ms: int = 0
    #: Random per request: when a reply is lost and the call is repeated, the
    #: script recognises its own earlier write instead of reporting a duplicate id.
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex[:16])


@dataclass(slots=True)
class TaskRecord:
    """The stored state of a task, decoded from its hash."""

    id: str
    status: str
    queue: str = ""
    name: str = ""
    attempts: int = 0
    max_retries: int = 0
    payload: bytes = b""
    result: bytes | None = None
    error: bytes | None = None
    reason: str = ""
    enqueued_ms: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    due_ms: int | None = None
    runtime_ms: int | None = None
    worker: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value is not None else ""


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value not in (None, b"") else None
    except ValueError:
        return None


class RedisBroker:
    """Knows the key layout and the scripts; holds no task state of its own."""

    def __init__(self, client: redis.Redis, settings: Settings, url: str = "") -> None:
        self.client = client
        self.settings = settings
        self.url = mask_url(url)
        self.keys = Keys(settings.redis.namespace)
        self.scripts = Scripts()
        self._dead = (
            int(settings.dead_letter.max_size),
            int(settings.dead_letter.ttl * 1000),
        )
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TRANSIENT),
            stop=(
                tenacity.stop_after_attempt(max(1, settings.redis.retry_attempts))
                | tenacity.stop_after_delay(settings.redis.retry_max_seconds)
            ),
            wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0),
            reraise=True,
        )

    def __repr__(self) -> str:
        return f"RedisBroker(url={self.url!r}, namespace={self.keys.namespace!r})"

    # -- error handling --------------------------------------------------------
    def wrap_error(self, exc: redis.exceptions.RedisError, doing: str) -> BrokerError:
        text = str(exc)
        if isinstance(exc, redis.exceptions.ReadOnlyError) or "read only replica" in text:
            # redis-py files this under ConnectionError; it is retried (a failover
            # may be under way) but reported for what it is.
            message = f"Redis is a read-only replica while {doing}: {exc}. Point redis.url at the primary"
        elif isinstance(exc, TRANSIENT):
            message = f"cannot reach Redis while {doing}: {exc}"
        elif "OOM" in text or "maxmemory" in text:
            message = (
                f"Redis is out of memory while {doing}: {exc}. Free memory or raise maxmemory; "
                "taskqueue needs maxmemory-policy noeviction so that queued tasks are never evicted"
            )
        else:
            message = f"Redis failed while {doing}: {exc}"
        error = BrokerError(message, url=self.url)
        error.__cause__ = exc
        return error

    def producer_call(self, doing: str, fn: Callable[[], T]) -> T:
        """Run fn, retrying transient connection errors, then raise BrokerError."""
        try:
            return self._retrying(fn)
        except redis.exceptions.RedisError as exc:
            raise self.wrap_error(exc, doing) from exc

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self.scripts.run(self.client, name, keys, args)

    def _pipeline(self, build: Callable[[Any], None], *, transaction: bool = False) -> list[Any]:
        """Run a pipeline of script calls; after NOSCRIPT load the scripts and run it again.

        Safe to repeat: a NOSCRIPT answer means the server lost all scripts,
        so none of the calls in the pipeline took effect.
        """
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=transaction)
            build(pipe)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self.scripts.load_all(self.client)
            except redis.exceptions.ResponseError as exc:
                if "NOSCRIPT" not in str(exc) or attempt == 2:
                    raise
                self.scripts.load_all(self.client)
        raise AssertionError("unreachable")

    # -- producer side -----------------------------------------------------------
    def _enqueue_call(self, pipe: Any, req: EnqueueRequest) -> None:
        k = self.keys
        self.scripts.queue(
            pipe,
            "enqueue",
            [
                k.task(req.id),
                k.queue(req.queue),
                k.wake(req.queue),
                k.scheduled,
                k.wake_scheduler,
                k.stats(req.queue),
            ],
            [
                req.id,
                req.payload,
                req.queue,
                req.name,
                req.max_retries,
                req.signature,
                req.delay_ms,
                req.eta_ms,
                req.nonce,
            ],
        )

    def enqueue(self, requests: Sequence[EnqueueRequest]) -> list[bool]:
        """Write tasks in one round trip; all or none (MULTI/EXEC around the scripts)."""
        if not requests:
            return []

        def build(pipe: Any) -> None:
            for req in requests:
                self._enqueue_call(pipe, req)

        results = self.producer_call(
            f"enqueueing {len(requests)} task(s)",
            lambda: self._pipeline(build, transaction=len(requests) > 1),
        )
        return [bool(r) for r in results]

    def cancel(self, task_id: str) -> str | None:
        k = self.keys
        status = self.producer_call(
            f"cancelling task {task_id}",
            lambda: self._run(
                "cancel",
                [
                    k.task(task_id),
                    k.queue_prefix,
                    k.scheduled,
                    k.done(task_id),
                    k.history(task_id),
                    k.control_prefix,
                ],
                [task_id, int(self.settings.tasks.result_ttl * 1000)],
            ),
        )
        return _text(status) if status else None

    def get_task(self, task_id: str, *, history: bool = False) -> TaskRecord | None:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.keys.task(task_id))
            if history:
                pipe.lrange(self.keys.history(task_id), 0, -1)
            return pipe.execute()

        replies = self.producer_call(f"reading task {task_id}", read)
        return self._record(task_id, replies[0], replies[1] if history else None)

    def get_tasks(self, task_ids: Sequence[str], *, history: bool = False) -> list[TaskRecord | None]:
        """Many task records in one round trip."""

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for task_id in task_ids:
                pipe.hgetall(self.keys.task(task_id))
                if history:
                    pipe.lrange(self.keys.history(task_id), 0, -1)
            return pipe.execute()

        replies = self.producer_call(f"reading {len(task_ids)} tasks", read)
        step = 2 if history else 1
        return [
            self._record(t, replies[i * step], replies[i * step + 1] if history else None)
            for i, t in enumerate(task_ids)
        ]

    def _record(self, task_id: str, h: dict[bytes, bytes], history: list[bytes] | None) -> TaskRecord | None:
        if not h or b"status" not in h:
            return None
        entries = []
        for raw in history or ():
            try:
                entries.append(json.loads(raw))
            except ValueError:
                entries.append({"event": "unreadable", "raw": _text(raw)})
        return TaskRecord(
            id=task_id,
            status=_text(h.get(b"status")),
            queue=_text(h.get(b"queue")),
            name=_text(h.get(b"name")),
            attempts=_int(h.get(b"attempts")) or 0,
            max_retries=_int(h.get(b"max_retries")) or 0,
            payload=h.get(b"payload", b""),
            result=h.get(b"result"),
            error=h.get(b"error") or None,
            reason=_text(h.get(b"reason")),
            enqueued_ms=_int(h.get(b"enqueued_ms")),
            started_ms=_int(h.get(b"started_ms")),
            finished_ms=_int(h.get(b"finished_ms")),
            due_ms=_int(h.get(b"due_ms")),
            runtime_ms=_int(h.get(b"runtime_ms")),
            worker=_text(h.get(b"worker")),
            history=entries,
        )

    def wait_done(self, task_id: str, timeout: float) -> bool:
        """Block until the task's done list has an element, or timeout; no polling.

        BLMOVE of the list onto itself leaves the element in place, so any
        number of waiters (in any process) see the same signal.
        """
        key = self.keys.done(task_id)
        # Keep each blocking call under the socket timeout.
        step = max(0.01, min(timeout, self.settings.redis.command_timeout * 0.8))
        return bool(
            self.producer_call(
                f"waiting for task {task_id}",
                lambda: self.client.blmove(key, key, step, "RIGHT", "LEFT"),
            )
        )

    # -- worker side (raise at once; the worker loop backs off) -----------------
    def _fetch_call(self, pipe: Any, worker_id: str, queues: Sequence[str], count: int) -> None:
        k = self.keys
        dead_max, dead_ttl = self._dead
        self.scripts.queue(
            pipe,
            "fetch",
            [
                k.task_prefix,
                k.history_prefix,
                k.done_prefix,
                k.queue_prefix,
                k.wake_prefix,
                k.dead_prefix,
                k.stats_prefix,
                k.leases,
                k.scheduled,
                k.paused,
            ],
            [
                worker_id,
                int(self.settings.lease_seconds * 1000),
                count,
                dead_max,
                dead_ttl,
                100,
                *queues,
            ],
        )

    @staticmethod
    def _parse_fetch(reply: list[Any]) -> FetchResult:
        now, next_due, dropped = int(reply[0]), int(reply[1]), int(reply[2])
        deliveries = [
            Delivery(
                id=_text(reply[i]),
                payload=reply[i + 1],
                signature=_text(reply[i + 2]),
                attempt=int(reply[i + 3]),
                token=_text(reply[i + 4]),
                queue=_text(reply[i + 5]),
            )
            for i in range(3, len(reply), 6)
        ]
        return FetchResult(deliveries, now, next_due, dropped)

    def fetch(self, worker_id: str, queues: Sequence[str], count: int) -> FetchResult:
        def build(pipe: Any) -> None:
            self._fetch_call(pipe, worker_id, queues, count)

        return self._parse_fetch(self._pipeline(build)[0])

    def _ack_call(self, pipe: Any, delivery: Delivery, result: bytes, runtime_ms: int) -> None:
        k = self.keys
        self.scripts.queue(
            pipe,
            "ack",
            [
                k.task(delivery.id),
                k.leases,
                k.done(delivery.id),
                k.stats(delivery.queue),
                k.history(delivery.id),
            ],
            [
                delivery.id,
                delivery.token,
                result,
                int(self.settings.tasks.result_ttl * 1000),
                runtime_ms,
            ],
        )

    def ack_and_fetch(
        self,
        delivery: Delivery,
        result: bytes,
        runtime_ms: int,
        worker_id: str,
        queues: Sequence[str],
        count: int,
    ) -> tuple[bool, FetchResult | None]:
        """Store a result and lease the next tasks in one round trip (count 0: ack only)."""

        def build(pipe: Any) -> None:
            self._ack_call(pipe, delivery, result, runtime_ms)
            if count > 0:
                self._fetch_call(pipe, worker_id, queues, count)

        replies = self._pipeline(build)
        return bool(replies[0]), (self._parse_fetch(replies[1]) if count > 0 else None)

    def fail(
        self,
        delivery: Delivery,
        *,
        action: str,
        history_entry: dict[str, Any],
        error: bytes,
        delay_ms: int = 0,
        reason: str = "",
    ) -> tuple[bool, int]:
        """Record a failed attempt: action is 'retry', 'dead' or 'failed'."""
        k = self.keys
        dead_max, dead_ttl = self._dead
        reply = self._run(
            "fail",
            [
                k.task(delivery.id),
                k.leases,
                k.done(delivery.id),
                k.stats(delivery.queue),
                k.history(delivery.id),
                k.scheduled,
                k.wake_scheduler,
                k.dead(delivery.queue),
                k.task_prefix,
                k.history_prefix,
                k.done_prefix,
            ],
            [
                delivery.id,
                delivery.token,
                action,
                json.dumps(history_entry, default=str),
                error,
                max(0, int(delay_ms)),
                reason,
                int(self.settings.tasks.result_ttl * 1000),
                dead_max,
                dead_ttl,
            ],
        )
        return bool(reply[0]), int(reply[1])

    def release(self, deliveries: Iterable[Delivery]) -> int:
        """Return fetched-but-unstarted tasks to the front of their queues."""
        items = list(deliveries)
        if not items:
            return 0
        k = self.keys

        def build(pipe: Any) -> None:
            for d in reversed(items):  # LPUSH in reverse keeps their order at the front
                self.scripts.queue(
                    pipe,
                    "release",
                    [k.task(d.id), k.leases, k.queue(d.queue), k.wake(d.queue)],
                    [d.id, d.token],
                )

        return sum(int(r) for r in self._pipeline(build))

    def heartbeat(
        self, worker_id: str, info: dict[str, Any], held: Sequence[tuple[str, str]], registry_ttl: float
    ) -> tuple[list[str], list[str]]:
        k = self.keys
        args: list[Any] = [
            worker_id,
            int(self.settings.lease_seconds * 1000),
            int(registry_ttl * 1000),
            json.dumps(info),
        ]
        for task_id, token in held:
            args += [task_id, token]
        cancelled, lost = self._run(
            "heartbeat", [k.leases, k.workers, k.worker(worker_id), k.task_prefix], args
        )
        return [_text(c) for c in cancelled], [_text(x) for x in lost]

    def unregister_worker(self, worker_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.keys.workers, worker_id)
        pipe.delete(self.keys.worker(worker_id))
        pipe.execute()

    def wait_for_work(self, queues: Sequence[str], worker_id: str, timeout: float) -> bool:
        """Block until a queue's wake list (or this worker's own) has a token."""
        keys = [self.keys.wake(q) for q in queues]
        keys += [self.keys.wake_scheduler, self.keys.wake_worker(worker_id)]
        return self.client.blpop(keys, timeout=max(0.01, timeout)) is not None

    def wait_control(self, worker_id: str, timeout: float) -> list[str]:
        """Block up to timeout for control messages to this worker; return them all."""
        key = self.keys.control(worker_id)
        first = self.client.blpop([key], timeout=max(0.01, timeout))
        if first is None:
            return []
        pipe = self.client.pipeline(transaction=True)
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        rest = pipe.execute()[0]
        return [_text(m) for m in [first[1], *rest] if m]

    def send_control(self, worker_id: str, message: str = "") -> None:
        key = self.keys.control(worker_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(key, message)
        pipe.pexpire(key, 60000)
        pipe.execute()

    def wake_workers(self, worker_id: str, count: int) -> None:
        key = self.keys.wake_worker(worker_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(key, *(["1"] * max(1, count)))
        pipe.expire(key, 60)
        pipe.execute()

    # -- inspection and administration -------------------------------------------
    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                pipe.llen(self.keys.queue(q))
            return pipe.execute()

        return dict(zip(queues, self.producer_call("reading queue lengths", read), strict=True))

    def queue_ids(self, queue: str, start: int = 0, stop: int = -1) -> list[str]:
        ids = self.producer_call(
            f"listing queue {queue}", lambda: self.client.lrange(self.keys.queue(queue), start, stop)
        )
        return [_text(i) for i in ids]

    def dead_ids(self, queue: str, limit: int = 1000) -> list[str]:
        ids = self.producer_call(
            f"listing dead letters of {queue}",
            lambda: self.client.zrange(self.keys.dead(queue), 0, limit - 1),
        )
        return [_text(i) for i in ids]

    def dead_count(self, queues: Sequence[str]) -> dict[str, int]:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                pipe.zcard(self.keys.dead(q))
            return pipe.execute()

        return dict(zip(queues, self.producer_call("counting dead letters", read), strict=True))

    def forget_dead(self, queue: str, ids: Sequence[str]) -> None:
        """Drop dead-letter entries whose task data has expired."""
        if ids:
            self.producer_call("pruning dead letters", lambda: self.client.zrem(self.keys.dead(queue), *ids))

    def requeue_dead(self, queue: str, task_id: str | None = None) -> int:
        k = self.keys
        total = 0
        while True:
            n = int(
                self.producer_call(
                    "requeueing dead letters",
                    lambda: self._run(
                        "requeue_dead",
                        [k.dead(queue), k.task_prefix, k.queue_prefix, k.wake_prefix, k.done_prefix],
                        [task_id or "", 500],
                    ),
                )
            )
            total += n
            if task_id or n < 500:
                return total

    def _purge(self, key: str, kind: str) -> int:
        k = self.keys
        total = 0
        while True:
            n = int(
                self.producer_call(
                    "purging",
                    lambda: self._run(
                        "purge", [key, k.task_prefix, k.history_prefix, k.done_prefix], [1000, kind]
                    ),
                )
            )
            total += n
            if n < 1000:
                return total

    def purge_queue(self, queue: str) -> int:
        return self._purge(self.keys.queue(queue), "list")

    def purge_dead(self, queue: str) -> int:
        return self._purge(self.keys.dead(queue), "zset")

    def stats(self, queues: Sequence[str]) -> dict[str, dict[str, int]]:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                pipe.hgetall(self.keys.stats(q))
            return pipe.execute()

        replies = self.producer_call("reading counters", read)
        return {q: {_text(k): int(v) for k, v in h.items()} for q, h in zip(queues, replies, strict=True)}

    def live_workers(self) -> dict[str, dict[str, Any]]:
        """Worker processes whose heartbeat has not expired, with their registry info."""

        def read() -> dict[str, dict[str, Any]]:
            t = self.client.time()
            now_ms = t[0] * 1000 + t[1] // 1000
            ids = self.client.zrangebyscore(self.keys.workers, now_ms, "+inf")
            pipe = self.client.pipeline(transaction=False)
            for worker_id in ids:
                pipe.hgetall(self.keys.worker(_text(worker_id)))
            out = {}
            for worker_id, h in zip(ids, pipe.execute(), strict=True):
                try:
                    info = json.loads(h.get(b"info", b"{}"))
                except ValueError:
                    info = {}
                info["heartbeat_ms"] = _int(h.get(b"heartbeat_ms"))
                out[_text(worker_id)] = info
            return out

        return self.producer_call("listing workers", read)

    def pause(self, queue: str, paused: bool = True) -> None:
        op = self.client.sadd if paused else self.client.srem
        self.producer_call("pausing a queue", lambda: op(self.keys.paused, queue))

    def paused_queues(self) -> set[str]:
        return {
            _text(q)
            for q in self.producer_call(
                "reading paused queues", lambda: self.client.smembers(self.keys.paused)
            )
        }

    def eviction_policy(self) -> str | None:
        """The server's ``maxmemory-policy``, or None where the server does not say
        (INFO refused by an ACL, or memory://)."""
        try:
            info = self.client.info("memory")
        except redis.exceptions.ResponseError:
            return None
        except redis.exceptions.RedisError as exc:
            raise self.wrap_error(exc, "reading the server's memory policy") from exc
        policy = info.get("maxmemory_policy")
        return str(policy) if policy is not None else None

    def ping(self) -> float:
        """Round-trip time in seconds."""
        start = time.perf_counter()
        self.client.ping()
        return time.perf_counter() - start
