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
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import tenacity

from taskqueue.broker.connection import mask_url
from taskqueue.broker.errors import TRANSIENT
from taskqueue.broker.keys import Keys
from taskqueue.broker.scripts import Scripts
from taskqueue.config import Settings
from taskqueue.errors import BrokerError
from taskqueue.status import FINAL_STATES

log = logging.getLogger("taskqueue.broker")
T = TypeVar("T")


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
    nonce: str = field(default_factory=lambda: os.urandom(8).hex())


@dataclass(frozen=True, slots=True)
class PromoteResult:
    """What one scheduler tick found (all times server ms)."""

    now_ms: int
    #: Scheduled tasks moved to their queue by this call.
    moved: int
    #: Earliest remaining scheduled task, -1 when none; <= now_ms when a backlog remains.
    next_scheduled_ms: int
    #: Earliest periodic run after now_ms, -1 when none.
    next_periodic_ms: int
    #: Due periodic tasks: (name, slot ms, stored JSON document).
    due_periodic: list[tuple[str, int, bytes]]


@dataclass(frozen=True, slots=True)
class PeriodicClaim:
    """One slot of one periodic task that a scheduler wants to claim (and enqueue)."""

    name: str
    slot_ms: int
    next_ms: int
    document: str
    run: bool
    task_id: str
    task_name: str
    queue: str
    payload: bytes
    signature: str
    max_retries: int


#: Codes returned by claim_periodic, one per claim.
CLAIM_ENQUEUED, CLAIM_SKIPPED, CLAIM_EXISTS = 1, 2, 3
CLAIM_LOST, CLAIM_NOT_DUE, CLAIM_UNKNOWN = 0, -1, -2

#: decide(now_ms, stored documents, stored next runs) -> (upserts name -> (JSON, next ms), removals)
PeriodicPlan = Callable[[int, dict[str, bytes], dict[str, int]], tuple[dict[str, tuple[str, int]], list[str]]]


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


@dataclass(frozen=True, slots=True)
class DeadEntry:
    """A dead letter as ``snapshot`` lists it (``error`` still msgpack-encoded)."""

    id: str
    died_ms: int
    name: str
    queue: str
    reason: str
    attempts: int
    error: bytes


@dataclass(frozen=True, slots=True)
class ScheduledEntry:
    """A task waiting for its due time (a delay, an eta or a retry)."""

    id: str
    due_ms: int
    name: str
    queue: str
    status: str
    attempts: int


@dataclass(slots=True)
class Snapshot:
    """The state of a namespace at one instant (``snapshot``), decoded but not interpreted."""

    now_ms: int
    #: Tasks leased by a worker (running or prefetched), in every queue.
    running: int
    #: Tasks waiting for a due time, in every queue.
    scheduled: int
    paused: set[str]
    #: Live worker processes: id -> registry info (host, pid, queues, threads, busy, ...).
    workers: dict[str, dict[str, Any]]
    pending: dict[str, int]
    dead_letters: dict[str, int]
    #: Per queue: its counters (enqueued, processed, failed, retried, dead, ...).
    stats: dict[str, dict[str, int]]
    #: The newest dead letters over all queues, newest first.
    dead: list[DeadEntry]
    #: The next scheduled tasks, soonest first.
    upcoming: list[ScheduledEntry]
    #: Periodic tasks registered by a scheduler: name -> stored document (JSON), and
    #: name -> next run (ms), as ``periodic_state`` returns them.
    periodic_docs: dict[str, bytes] = field(default_factory=dict)
    periodic_due: dict[str, int] = field(default_factory=dict)
    #: Per queue: the fields of its metrics hash (see ``Keys.metrics_prefix``).
    metrics: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Per queue: (enqueued_ms, due_ms) of the task at the head of the queue, if any.
    oldest: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    autoscaler: dict[str, str] = field(default_factory=dict)

    def metrics_reading(self) -> MetricsReading:
        """The same data as ``RedisBroker.read_metrics`` returns, for ``taskqueue.metrics``."""
        queues = list(self.pending)
        return MetricsReading(
            now_ms=self.now_ms,
            queues=queues,
            pending=dict(self.pending),
            dead_letters=dict(self.dead_letters),
            stats=self.stats,
            metrics=self.metrics,
            oldest=self.oldest,
            running=self.running,
            scheduled=self.scheduled,
            paused=set(self.paused),
            workers=self.workers,
            autoscaler=dict(self.autoscaler),
        )


@dataclass(slots=True)
class MetricsReading:
    """What ``RedisBroker.read_metrics`` fetched, decoded but not interpreted
    (``taskqueue.metrics`` turns it into figures)."""

    now_ms: int
    queues: list[str]
    pending: dict[str, int]
    dead_letters: dict[str, int]
    #: Per queue: the queue-level counters of the stats hash.
    stats: dict[str, dict[str, int]]
    #: Per queue: the fields of its metrics hash (see ``Keys.metrics_prefix``).
    metrics: dict[str, dict[str, int]]
    #: Per queue: (enqueued_ms, due_ms) of the task at the head of the queue, if any.
    oldest: dict[str, tuple[int | None, int | None]]
    running: int
    scheduled: int
    paused: set[str]
    workers: dict[str, dict[str, Any]]
    autoscaler: dict[str, str]


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value is not None else ""


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value not in (None, b"") else None
    except ValueError:
        return None


def _pairs(flat: list[Any]) -> dict[bytes, bytes]:
    """A Lua HGETALL reply (field, value, field, value...) as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _counters(h: dict[bytes, bytes]) -> dict[str, int]:
    out = {}
    for key, value in h.items():
        number = _int(value)
        if number is not None:
            out[_text(key)] = number
    return out


def _worker_info(h: dict[bytes, bytes]) -> dict[str, Any]:
    try:
        info = json.loads(h.get(b"info", b"{}"))
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    info["heartbeat_ms"] = _int(h.get(b"heartbeat_ms"))
    return info


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

    def _pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """Run a pipeline of script calls; after NOSCRIPT load the scripts and run it again.

        Safe to repeat: a NOSCRIPT answer means the server lost all scripts,
        so none of the calls in the pipeline took effect.
        """
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
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
    def enqueue(self, requests: Sequence[EnqueueRequest]) -> list[bool]:
        """Write tasks with one script call: one round trip, and all of them or none."""
        if not requests:
            return []
        k = self.keys
        args: list[Any] = []
        for req in requests:
            args += [
                req.id,
                req.payload,
                req.queue,
                req.name,
                req.max_retries,
                req.signature,
                req.delay_ms,
                req.eta_ms,
                req.nonce,
            ]
        keys = [k.task_prefix, k.queue_prefix, k.wake_prefix, k.scheduled, k.wake_scheduler, k.stats_prefix]
        results = self.producer_call(
            f"enqueueing {len(requests)} task(s)", lambda: self._run("enqueue", keys, args)
        )
        return [bool(r) for r in results]

    def cancel(self, task_id: str) -> str | None:
        """Cancel one task; its previous status (None: no such task)."""
        return self.cancel_many([task_id])[0]

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

    def watch(self, task_id: str) -> TaskRecord | None:
        """Read a task and note that somebody waits for it (so its end is signalled)."""
        flat = self.producer_call(
            f"reading task {task_id}", lambda: self._run("watch", [self.keys.task(task_id)], [])
        )
        return self._record(task_id, dict(zip(flat[::2], flat[1::2], strict=True)), None)

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
                k.metrics_prefix,
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

    def _ack_call(self, pipe: Any, acks: Sequence[tuple[Delivery, bytes, int]]) -> None:
        k = self.keys
        args: list[Any] = [int(self.settings.tasks.result_ttl * 1000)]
        for delivery, result, runtime_ms in acks:
            args += [delivery.id, delivery.token, delivery.queue, result, runtime_ms]
        self.scripts.queue(
            pipe,
            "ack",
            [k.task_prefix, k.history_prefix, k.done_prefix, k.stats_prefix, k.metrics_prefix, k.leases],
            args,
        )

    def _logs_call(self, pipe: Any, task_id: str, lines: Sequence[str]) -> None:
        """Append a task's captured output to its bounded list (see ``taskqueue.capture``).

        Queued before the outcome's script, so whoever wakes on the outcome finds the lines.
        The list lives as long as the task can still be looked at: its result or its dead letter.
        """
        key = self.keys.logs(task_id)
        ttl_ms = int(max(self.settings.tasks.result_ttl, self.settings.dead_letter.ttl) * 1000)
        pipe.rpush(key, *lines)
        pipe.ltrim(key, -max(1, self.settings.tasks.max_log_lines), -1)
        pipe.pexpire(key, ttl_ms)

    def ack_and_fetch(
        self,
        acks: Sequence[tuple[Delivery, bytes, int]],
        worker_id: str,
        queues: Sequence[str],
        count: int,
        logs: Mapping[str, Sequence[str]] | None = None,
    ) -> tuple[list[bool], FetchResult | None]:
        """Store results (delivery, result, runtime ms) and lease up to ``count`` tasks,
        in one round trip. Returns, per result, whether it was stored (False: its lease
        was lost meanwhile and a newer attempt's outcome stands), and what was leased.

        ``logs``: task id -> lines it printed, for the tasks that printed anything; a
        batch of silent tasks sends nothing more.
        """
        unsent = [bool(logs)]

        def build(pipe: Any) -> None:
            # A repeat after NOSCRIPT must not append the lines again: they went through.
            if unsent[0] and logs:
                for task_id, lines in logs.items():
                    self._logs_call(pipe, task_id, lines)
                unsent[0] = False
            if acks:
                self._ack_call(pipe, acks)
            if count > 0:
                self._fetch_call(pipe, worker_id, queues, count)

        if not acks and count <= 0:
            return [], None
        replies = self._pipeline(build)
        stored = [bool(x) for x in replies[-2 if count > 0 else -1]] if acks else []
        return stored, (self._parse_fetch(replies[-1]) if count > 0 else None)

    def ack(self, delivery: Delivery, result: bytes, runtime_ms: int = 0) -> bool:
        """Store one result; False when the lease was lost (nothing written)."""
        return bool(self._pipeline(lambda pipe: self._ack_call(pipe, [(delivery, result, runtime_ms)]))[0][0])

    def fail(
        self,
        delivery: Delivery,
        *,
        action: str,
        history_entry: dict[str, Any],
        error: bytes,
        delay_ms: int = 0,
        reason: str = "",
        logs: Sequence[str] = (),
        runtime_ms: int = -1,
    ) -> tuple[bool, int]:
        """Record a failed attempt: action is 'retry', 'dead' or 'failed'.

        ``logs``: the attempt's captured output, stored in the same round trip.
        ``runtime_ms`` (how long the attempt ran; -1 when unknown) goes into the
        execution-time histogram, so slow failures show in the metrics too.
        """
        k = self.keys
        dead_max, dead_ttl = self._dead
        keys = [
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
            k.metrics(delivery.queue),
        ]
        args = [
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
            int(runtime_ms),
        ]
        if not logs:
            reply = self._run("fail", keys, args)
        else:
            unsent = [True]

            def build(pipe: Any) -> None:
                if unsent[0]:  # not again on a repeat after NOSCRIPT: the lines went through
                    self._logs_call(pipe, delivery.id, logs)
                    unsent[0] = False
                self.scripts.queue(pipe, "fail", keys, args)

            reply = self._pipeline(build)[-1]
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

    # -- scheduler side (raise at once; the scheduler loop backs off) ---------------
    def promote(self, max_tasks: int, max_periodic: int, now_ms: int | None = None) -> PromoteResult:
        """Move due scheduled tasks to their queues (oldest first) and list due periodic tasks.

        One script call: atomic, and cheap when nothing is due. ``now_ms``
        replaces the server clock (tests only).
        """
        k = self.keys
        reply = self._run(
            "promote",
            [k.scheduled, k.task_prefix, k.queue_prefix, k.wake_prefix, k.periodic_due, k.periodic],
            [max_tasks, max_periodic, now_ms or 0],
        )
        due = [
            (_text(reply[i]), int(float(reply[i + 1])), reply[i + 2] or b"") for i in range(4, len(reply), 3)
        ]
        return PromoteResult(int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3]), due)

    def claim_periodic(
        self, claims: Sequence[PeriodicClaim], now_ms: int | None = None
    ) -> list[tuple[int, int]]:
        """Claim periodic slots (compare-and-set on their next run), in one round trip.

        Returns (code, next run ms) per claim; see the CLAIM_* codes.
        """
        if not claims:
            return []
        k = self.keys

        def build(pipe: Any) -> None:
            for c in claims:
                self.scripts.queue(
                    pipe,
                    "claim_periodic",
                    [
                        k.periodic_due,
                        k.periodic,
                        k.task(c.task_id),
                        k.queue(c.queue),
                        k.wake(c.queue),
                        k.stats(c.queue),
                    ],
                    [
                        c.name,
                        c.slot_ms,
                        c.next_ms,
                        c.document,
                        1 if c.run else 0,
                        c.task_id,
                        c.payload,
                        c.queue,
                        c.task_name,
                        c.max_retries,
                        c.signature,
                        now_ms or 0,
                    ],
                )

        return [(int(code), int(next_ms)) for code, next_ms in self._pipeline(build)]

    def sync_periodic(self, plan: PeriodicPlan, now_ms: int | None = None) -> None:
        """Register periodic definitions: read what is stored, let ``plan`` decide, write.

        A WATCH transaction: if a scheduler claims a slot meanwhile, the read
        is repeated, so a registration never undoes a claim.
        """
        k = self.keys

        def transaction(pipe: Any) -> None:
            stored = {_text(n): doc for n, doc in pipe.hgetall(k.periodic).items()}
            due = {_text(n): int(s) for n, s in pipe.zrange(k.periodic_due, 0, -1, withscores=True)}
            if now_ms is None:
                seconds, micros = pipe.time()
                now = int(seconds) * 1000 + int(micros) // 1000
            else:
                now = now_ms
            upserts, removals = plan(now, stored, due)
            pipe.multi()
            for name, (document, next_ms) in upserts.items():
                pipe.hset(k.periodic, name, document)
                pipe.zadd(k.periodic_due, {name: next_ms})
            if removals:
                pipe.hdel(k.periodic, *removals)
                pipe.zrem(k.periodic_due, *removals)

        self.producer_call(
            "registering periodic tasks",
            lambda: self.client.transaction(transaction, k.periodic, k.periodic_due),
        )

    def periodic_state(self) -> tuple[dict[str, bytes], dict[str, int]]:
        """The stored periodic documents and next runs (ms), as ``periodic_tasks()`` shows them."""
        k = self.keys

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.hgetall(k.periodic)
            pipe.zrange(k.periodic_due, 0, -1, withscores=True)
            return pipe.execute()

        docs, due = self.producer_call("reading periodic tasks", read)
        return {_text(n): d for n, d in docs.items()}, {_text(n): int(s) for n, s in due}

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
            return {
                _text(worker_id): _worker_info(h) for worker_id, h in zip(ids, pipe.execute(), strict=True)
            }

        return self.producer_call("listing workers", read)

    def snapshot(self, queues: Sequence[str], dead_limit: int = 20, scheduled_limit: int = 20) -> Snapshot:
        """Everything a monitor shows in one round trip (one read-only script), whatever
        the queue sizes: see ``scripts/snapshot.lua``."""
        k = self.keys
        keys = [
            k.workers,
            k.leases,
            k.scheduled,
            k.paused,
            k.worker_prefix,
            k.task_prefix,
            k.queue_prefix,
            k.dead_prefix,
            k.stats_prefix,
            k.periodic,
            k.periodic_due,
            k.metrics_prefix,
            k.autoscaler,
        ]
        args = [max(0, int(dead_limit)), max(0, int(scheduled_limit)), *queues]

        def build(pipe: Any) -> None:
            self.scripts.queue(pipe, "snapshot", keys, args)

        reply = self.producer_call("reading a snapshot", lambda: self._pipeline(build)[0])
        now_ms, running, scheduled, paused, workers, per_queue, dead, upcoming, docs, due, scaler = reply
        live: dict[str, dict[str, Any]] = {}
        for worker_id, info, heartbeat in workers:
            live[_text(worker_id)] = _worker_info({b"info": info, b"heartbeat_ms": heartbeat or None})
        return Snapshot(
            now_ms=int(now_ms),
            running=int(running),
            scheduled=int(scheduled),
            paused={_text(p) for p in paused},
            workers=live,
            pending={q: int(r[0]) for q, r in zip(queues, per_queue, strict=True)},
            dead_letters={q: int(r[1]) for q, r in zip(queues, per_queue, strict=True)},
            stats={q: _counters(_pairs(r[2])) for q, r in zip(queues, per_queue, strict=True)},
            metrics={q: _counters(_pairs(r[3])) for q, r in zip(queues, per_queue, strict=True)},
            oldest={
                q: (_int(r[4][0]), _int(r[4][1]))
                for q, r in zip(queues, per_queue, strict=True)
                if r[4] and r[4][0] is not None
            },
            autoscaler={_text(a): _text(b) for a, b in _pairs(scaler).items()},
            dead=[
                DeadEntry(
                    _text(e[0]), int(e[1]), _text(e[2]), _text(e[3]), _text(e[4]), _int(e[5]) or 0, e[6]
                )
                for e in dead
            ],
            upcoming=[
                ScheduledEntry(_text(e[0]), int(e[1]), _text(e[2]), _text(e[3]), _text(e[4]), _int(e[5]) or 0)
                for e in upcoming
            ],
            periodic_docs={_text(docs[i]): docs[i + 1] for i in range(0, len(docs), 2)},
            periodic_due={_text(due[i]): int(float(due[i + 1])) for i in range(0, len(due), 2)},
        )

    def task_logs(self, task_id: str) -> list[str]:
        """The stored output lines of a task (each with its kind letter, see ``taskqueue.capture``)."""
        lines = self.producer_call(
            f"reading the logs of task {task_id}", lambda: self.client.lrange(self.keys.logs(task_id), 0, -1)
        )
        return [_text(line) for line in lines]

    def task_statuses(self, task_ids: Sequence[str]) -> list[str]:
        """The status of many tasks in one round trip ('' for a task Redis no longer has)."""

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for task_id in task_ids:
                pipe.hget(self.keys.task(task_id), "status")
            return pipe.execute()

        return [_text(s) for s in self.producer_call(f"reading {len(task_ids)} statuses", read)]

    def cancel_many(self, task_ids: Sequence[str]) -> list[str | None]:
        """``cancel`` for many tasks in one round trip; each one's previous status."""
        if not task_ids:
            return []
        k = self.keys
        ttl = int(self.settings.tasks.result_ttl * 1000)

        def build(pipe: Any) -> None:
            for task_id in task_ids:
                self.scripts.queue(
                    pipe,
                    "cancel",
                    [
                        k.task(task_id),
                        k.queue_prefix,
                        k.scheduled,
                        k.done(task_id),
                        k.history(task_id),
                        k.control_prefix,
                    ],
                    [task_id, ttl],
                )

        doing = (
            f"cancelling task {task_ids[0]}" if len(task_ids) == 1 else f"cancelling {len(task_ids)} tasks"
        )
        replies = self.producer_call(doing, lambda: self._pipeline(build))
        return [_text(r) if r else None for r in replies]

    def read_metrics(self, queues: Sequence[str]) -> MetricsReading:
        """Everything the metrics need, in two pipelined round trips whatever the
        queue sizes: counters, histograms, lengths, the head of each queue, workers."""
        k = self.keys

        def read() -> MetricsReading:
            pipe = self.client.pipeline(transaction=False)
            pipe.time()
            pipe.zrange(k.workers, 0, -1, withscores=True)
            pipe.zcard(k.leases)
            pipe.zcard(k.scheduled)
            pipe.smembers(k.paused)
            pipe.hgetall(k.autoscaler)
            for q in queues:
                pipe.llen(k.queue(q))
                pipe.zcard(k.dead(q))
                pipe.hgetall(k.stats(q))
                pipe.hgetall(k.metrics(q))
                pipe.lindex(k.queue(q), 0)
            replies = pipe.execute()
            t, members, running, scheduled, paused, autoscaler = replies[:6]
            now_ms = int(t[0]) * 1000 + int(t[1]) // 1000
            per_queue = [replies[6 + 5 * i : 11 + 5 * i] for i in range(len(queues))]
            live = [_text(m) for m, deadline in members if deadline >= now_ms]
            heads = {q: _text(r[4]) for q, r in zip(queues, per_queue, strict=True) if r[4]}

            pipe = self.client.pipeline(transaction=False)
            for worker_id in live:
                pipe.hgetall(k.worker(worker_id))
            for task_id in heads.values():
                pipe.hmget(k.task(task_id), "enqueued_ms", "due_ms")
            second = pipe.execute() if live or heads else []
            workers = {w: _worker_info(h) for w, h in zip(live, second, strict=False) if h}
            oldest = {
                q: (_int(f[0]), _int(f[1]))
                for q, f in zip(heads, second[len(live) :], strict=True)
                if f[0] is not None
            }
            return MetricsReading(
                now_ms=now_ms,
                queues=list(queues),
                pending={q: int(r[0]) for q, r in zip(queues, per_queue, strict=True)},
                dead_letters={q: int(r[1]) for q, r in zip(queues, per_queue, strict=True)},
                stats={q: _counters(r[2]) for q, r in zip(queues, per_queue, strict=True)},
                metrics={q: _counters(r[3]) for q, r in zip(queues, per_queue, strict=True)},
                oldest=oldest,
                running=int(running),
                scheduled=int(scheduled),
                paused={_text(p) for p in paused},
                workers=workers,
                autoscaler={_text(a): _text(b) for a, b in autoscaler.items()},
            )

        return self.producer_call("reading metrics", read)

    def record_scaling(self, direction: str, decision: dict[str, Any]) -> None:
        """Count one autoscaler decision ('up' or 'down') for every process to see."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hincrby(self.keys.autoscaler, f"scale_{direction}", 1)
        pipe.hset(self.keys.autoscaler, "last_decision", json.dumps(decision))
        pipe.execute()

    def server_info(self) -> dict[str, Any]:
        """INFO server and memory, for the health check (raises ResponseError on
        servers without INFO, such as the in-process memory:// server)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.info("server")
        pipe.info("memory")
        server, memory = pipe.execute()
        return {**server, **memory}

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
