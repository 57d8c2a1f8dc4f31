"""What the pool's threads share: the attempts this process holds, the slots
that run them, and the small helpers of their loops (backoff, outage notice).

Several threads read and write these objects (a slot's own thread, the
heartbeat, the watchdog), so each field says who writes it; the few
decisions that two threads may race for are taken under ``Slot.lock``.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskqueue import context
from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.worker.refusal import Refusals

if TYPE_CHECKING:
    from taskqueue.broker import Delivery, TaskSet
    from taskqueue.broker.ports import WorkerLink
    from taskqueue.config import Settings
    from taskqueue.hooks import Hooks
    from taskqueue.progress import ProgressReporter
    from taskqueue.registry import TaskDefinition

log = logging.getLogger("taskqueue.worker")

_slot_numbers = itertools.count(1)
_end_lock = threading.Lock()


@dataclass(eq=False)
class Attempt:
    """A task this process holds a lease on: running, or fetched and waiting."""

    delivery: Delivery
    slot: Slot | None = None
    ctx: context.TaskContext | None = None
    definition: TaskDefinition | None = None
    deadline: float | None = None  # monotonic
    timed_out_at: float | None = None
    #: When the slot took it up (monotonic); 0.0 while it waits in a buffer.
    started: float = 0.0
    #: The name in its payload, once decoded (kept even when no such task is registered).
    task_name: str = ""
    #: True once ``task_started`` was emitted.
    announced: bool = False
    #: True once one thread took it on itself to end the attempt (see ``claim_end``).
    ended: bool = False
    #: Why the watchdog or the heartbeat stopped it ("not renewed for 3.1 s", ...).
    stop_reason: str = ""
    #: When the request that last renewed the lease was sent (monotonic): the
    #: server's deadline is at least this plus the lease, never earlier.
    lease_from: float = field(default_factory=time.monotonic)
    lease_lost_at: float | None = None
    #: cancel() reached this process before the task started: it never starts.
    cancel_requested: bool = False
    #: True once Redis was told its code started (it reads RUNNING from then on).
    marked: bool = False

    @property
    def stopped_at(self) -> float | None:
        """When the watchdog told the attempt to stop (timeout or lost lease)."""
        return self.timed_out_at if self.timed_out_at is not None else self.lease_lost_at

    def claim_end(self) -> bool:
        """True for the one thread that ends this attempt (emits its ending event, stores
        its outcome): the task's own thread, or the watchdog or heartbeat that stopped it."""
        with _end_lock:
            if self.ended:
                return False
            self.ended = True
            return True

    def duration(self) -> float | None:
        """Seconds since the attempt started, None when it never did."""
        return time.monotonic() - self.started if self.started else None


@dataclass(eq=False)
class Slot:
    """One worker thread and the state the watchdog needs to stop it."""

    number: int = field(default_factory=lambda: next(_slot_numbers))
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    current: Attempt | None = None
    in_user_code: bool = False
    retiring: bool = False
    abandoned: bool = False
    #: Leased tasks waiting for this thread. The watchdog hands them back to the queue
    #: when the running task turns out slow (deque appends and pops are atomic).
    buffer: deque[Delivery] = field(default_factory=deque)


class Held:
    """The attempts this process holds leases on, by task id.

    A task handed back (or retried) can be leased again by another thread of
    this process before the first thread forgets it, so forgetting is fenced
    by the lease token: forgetting an old delivery never drops a newer one.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, Attempt] = {}

    def add(self, attempt: Attempt) -> None:
        self._by_id[attempt.delivery.id] = attempt

    def keep(self, attempt: Attempt) -> None:
        """Hold ``attempt`` again unless a newer delivery of its task is held."""
        self._by_id.setdefault(attempt.delivery.id, attempt)

    def get(self, task_id: str) -> Attempt | None:
        return self._by_id.get(task_id)

    def all(self) -> list[Attempt]:
        """A copy: other threads add and forget meanwhile."""
        return list(self._by_id.values())

    def forget(self, delivery: Delivery) -> None:
        attempt = self._by_id.get(delivery.id)
        if attempt is not None and attempt.delivery.token == delivery.token:
            self._by_id.pop(delivery.id, None)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)


class Outage:
    """Shared by the pool's threads so one Redis outage logs one line, not one per thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None

    def failed(self, exc: Exception) -> None:
        with self._lock:
            if self.since is None:
                self.since = time.monotonic()
                log.warning("Redis is unreachable or failing (%s); workers keep retrying with backoff", exc)

    def recovered(self) -> None:
        if self.since is None:
            return
        with self._lock:
            if self.since is not None:
                log.warning("Redis is back after %.1f s; workers resumed", time.monotonic() - self.since)
                self.since = None


class Average:
    """Exponentially weighted mean of a thread's recent task durations (seconds)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float | None = None

    def add(self, sample: float) -> None:
        self.value = sample if self.value is None else 0.8 * self.value + 0.2 * sample


class Backoff:
    """Jittered exponential pause between retries of a failing Redis call."""

    def __init__(self, initial: float = 0.05, maximum: float = 5.0) -> None:
        self.initial, self.maximum, self.current = initial, maximum, initial

    def reset(self) -> None:
        self.current = self.initial

    def pause(self, stop: threading.Event) -> None:
        stop.wait(self.current * (0.5 + random.random()))
        self.current = min(self.maximum, self.current * 2)


class WatchClock:
    """When the watchdog wakes next, and the condition that wakes it earlier.

    Threads that create a deadline sooner than that (a task starting, a full
    prefetch buffer) notify it; others leave it asleep.
    """

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.next_wake = 0.0  # monotonic

    def wake_before(self, when: float) -> None:
        if when < self.next_wake:
            self.wake()

    def wake(self) -> None:
        with self.condition:
            self.condition.notify_all()

    def sleep_until(self, when: float) -> None:
        with self.condition:
            self.next_wake = when
            self.condition.wait(max(0.001, when - time.monotonic()))


@dataclass(eq=False)
class Shared:
    """What every part of one pool reads: its link to Redis, settings, hooks and held leases."""

    link: WorkerLink
    settings: Settings
    hooks: Hooks
    worker_id: str
    #: The queues still served, by priority; replaced (never changed in place) when one stops.
    queues: list[str]
    held: Held = field(default_factory=Held)
    stop: threading.Event = field(default_factory=threading.Event)
    outage: Outage = field(default_factory=Outage)
    watch: WatchClock = field(default_factory=WatchClock)
    #: What this process serves (its task set), as last published; fetches lease only these.
    taskset: TaskSet | None = None
    #: Set when a task starts; the state publisher blocks on it while every slot is idle.
    activity: threading.Event = field(default_factory=threading.Event)
    #: Publishes the task set again at once (a fetch found it missing from Redis).
    republish: Callable[[], None] = lambda: None
    #: A lease not renewed for this long is given up *locally*, a margin before
    #: the server may hand the task to another worker, so that two attempts of
    #: one task never run at the same time (as far as Python can stop a thread).
    lease_limit: float = 0.0
    #: Writes what tasks report with ``current_task().progress`` (None: the link stores none).
    progress: ProgressReporter | None = None
    #: The queues this pool stopped serving on an answer that no retry can fix.
    refusals: Refusals = field(init=False)

    def __post_init__(self) -> None:
        self.refusals = Refusals(self)
        if not self.lease_limit:
            lease = self.settings.lease_seconds
            self.lease_limit = lease - 0.5 * min(self.settings.workers.heartbeat_interval, lease / 3)

    def release(self, deliveries: list[Delivery]) -> None:
        """Give unstarted tasks back to the front of their queues (their leases expire otherwise)."""
        # Forget them first: once released, another thread here may lease them again.
        for delivery in deliveries:
            self.held.forget(delivery)
        try:
            self.link.release(deliveries)
        except REDIS_ERRORS as exc:
            log.warning(
                "could not return %d prefetched task(s) (%s); their leases will expire", len(deliveries), exc
            )
