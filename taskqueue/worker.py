"""The worker pool: threads that lease tasks from Redis and run them.

Each thread loops on its own: lease a task (one Lua call that also takes the
highest-priority queue first), run it, then store the result *and* lease the
next task in the same round trip. An idle thread blocks on a Redis wake-up
list instead of polling. Two helper threads per pool: the heartbeat renews
the leases of running tasks (so a long task is never handed to another
worker) and registers the process; the watchdog enforces timeouts.

Why plain threads rather than ``concurrent.futures.ThreadPoolExecutor``: an
executor cannot shrink (the autoscaler needs that) and cannot replace a
thread stuck in a task that ignored its timeout (we must, so the pool keeps
its capacity). The pool here does both.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import random
import socket
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskqueue import capture, context
from taskqueue.broker import Delivery, FetchResult, RedisBroker
from taskqueue.config import Settings
from taskqueue.errors import (
    PayloadTooLarge,
    Reject,
    Retry,
    SerializationError,
    TaskCancelled,
    TaskNotFound,
    TaskTimeout,
)
from taskqueue.registry import TaskDefinition, TaskRegistry
from taskqueue.retry import RetryPolicy, default_wait
from taskqueue.serialization import Signer, decode, dumps

log = logging.getLogger("taskqueue.worker")

_slot_numbers = itertools.count(1)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _exc_info(exc: BaseException) -> dict[str, Any]:
    """Type, message and traceback; the traceback starts at the task's own code,
    without the worker frames above it (unless the error arose in taskqueue itself)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    shown = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        "message": str(exc),
        "traceback": shown,
    }


@dataclass
class _Running:
    """A task this process holds a lease on (running, or fetched and waiting)."""

    delivery: Delivery
    slot: _Slot | None = None
    ctx: context.TaskContext | None = None
    definition: TaskDefinition | None = None
    deadline: float | None = None  # monotonic
    timed_out_at: float | None = None
    started: float = 0.0
    #: What the task printed or logged (None when tasks.capture_output is off).
    output: capture.OutputBuffer | None = None

    def logs(self, error: BaseException | None = None) -> list[str]:
        return self.output.lines(error) if self.output is not None else []

    #: When the request that last renewed the lease was sent (monotonic): the
    #: server's deadline is at least this plus the lease, never earlier.
    lease_from: float = field(default_factory=time.monotonic)
    lease_lost_at: float | None = None

    @property
    def stopped_at(self) -> float | None:
        """When the watchdog told the attempt to stop (timeout or lost lease)."""
        return self.timed_out_at if self.timed_out_at is not None else self.lease_lost_at


@dataclass(eq=False)
class _Slot:
    """One worker thread and the state the watchdog needs to stop it."""

    number: int = field(default_factory=lambda: next(_slot_numbers))
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    current: _Running | None = None
    in_user_code: bool = False
    retiring: bool = False
    abandoned: bool = False
    #: Leased tasks waiting for this thread. The watchdog hands them back to the queue
    #: when the running task turns out slow (deque appends and pops are atomic).
    buffer: deque[Delivery] = field(default_factory=deque)


class _Outage:
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


class _Average:
    """Exponentially weighted mean of a thread's recent task durations (seconds)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float | None = None

    def add(self, sample: float) -> None:
        self.value = sample if self.value is None else 0.8 * self.value + 0.2 * sample


class _Backoff:
    def __init__(self, initial: float = 0.05, maximum: float = 5.0) -> None:
        self.initial, self.maximum, self.current = initial, maximum, initial

    def reset(self) -> None:
        self.current = self.initial

    def pause(self, stop: threading.Event) -> None:
        stop.wait(self.current * (0.5 + random.random()))
        self.current = min(self.maximum, self.current * 2)


from taskqueue.broker.errors import REDIS_ERRORS  # noqa: E402


class _AsyncTimeout(TaskTimeout):
    """What the watchdog raises inside a task thread. CPython builds an
    asynchronous exception from its class with no arguments, hence this subclass."""

    def __init__(self) -> None:
        super().__init__("", 0)


class _AsyncLeaseLost(TaskCancelled):
    """Raised inside a task thread whose lease could not be renewed in time."""

    def __init__(self) -> None:
        super().__init__("the task's lease was lost; another worker may run it")


class WorkerPool:
    """Worker threads of one process for one set of queues."""

    def __init__(
        self,
        broker: RedisBroker,
        registry: TaskRegistry,
        settings: Settings,
        queues: list[str],
        signer: Signer | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.settings = settings
        self.queues = list(queues)
        self.signer = signer or Signer(())
        self.on_event = on_event
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wait_fallback = default_wait(settings.tasks)
        self._slots: list[_Slot] = []
        self._held: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch = threading.Condition()
        self._watch_next = 0.0  # when the watchdog wakes next (monotonic)
        #: Prefetched tasks given back to their queue because the task ahead of them was slow.
        self.handed_back = 0
        self._outage = _Outage()
        self._helpers: list[threading.Thread] = []
        self._started_at = time.time()
        self._running = False
        #: Extra fields published in the worker registry with each heartbeat
        #: (the autoscaler adds its state here, so metrics can show it for every process).
        self.info: dict[str, Any] = {}
        # A lease not renewed for this long is given up *locally*, a margin before
        # the server may hand the task to another worker, so that two attempts
        # of one task never run at the same time (as far as Python can stop a thread).
        lease = settings.lease_seconds
        self._lease_limit = lease - 0.5 * min(settings.workers.heartbeat_interval, lease / 3)
        self._lease_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<WorkerPool {self.id} threads={self.count()} queues={','.join(self.queues)}>"

    # -- lifecycle ---------------------------------------------------------------
    def start(self, count: int) -> None:
        if self._running:
            self.resize(self.count() + count)
            return
        self._running = True
        self._stop.clear()
        try:
            self._heartbeat_once()
        except REDIS_ERRORS as exc:  # e.g. out of memory: the heartbeat thread keeps trying
            self._outage.failed(exc)
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._watchdog_loop, "watchdog")):
            thread = threading.Thread(target=target, name=f"taskqueue-{name}", daemon=True)
            thread.start()
            self._helpers.append(thread)
        self.resize(count)
        try:
            self._heartbeat_once()  # again, so the registry shows the threads now, not a heartbeat later
        except REDIS_ERRORS:
            pass  # the heartbeat thread retries

    def count(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots if not s.retiring and not s.abandoned)

    def busy(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots if s.current is not None and not s.abandoned)

    def resize(self, count: int) -> None:
        """Add threads, or ask idle ones to leave (a running task is never interrupted)."""
        with self._lock:
            active = [s for s in self._slots if not s.retiring and not s.abandoned]
            for _ in range(count - len(active)):
                self._spawn_locked()
            surplus = len(active) - count
            # Idle threads first: they leave at once; busy ones after their task.
            for slot in sorted(active, key=lambda s: s.current is not None)[: max(0, surplus)]:
                slot.retiring = True
        if count < len(active):
            self._wake_idle(len(active) - count)
        if self._running and count != len(active):
            # Publish the new thread count now rather than at the next heartbeat,
            # so metrics and other processes' autoscalers see it at once.
            try:
                self._heartbeat_once()
            except REDIS_ERRORS:
                pass  # the heartbeat thread publishes it when Redis answers again

    def _spawn_locked(self) -> None:
        slot = _Slot()
        slot.thread = threading.Thread(
            target=self._run_slot, args=(slot,), name=f"taskqueue-worker-{slot.number}", daemon=True
        )
        self._slots.append(slot)
        slot.thread.start()

    def _wake_idle(self, count: int) -> None:
        try:
            self.broker.wake_workers(self.id, count)
        except REDIS_ERRORS:
            pass  # they notice within idle_poll_seconds anyway

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking work; wait for running tasks; return True when all threads ended."""
        if not self._running:
            return True
        grace = self.settings.workers.shutdown_grace_period if timeout is None else timeout
        with self._lock:
            slots = list(self._slots)
            for slot in slots:
                slot.retiring = True
        self._wake_idle(len(slots))
        deadline = time.monotonic() + grace
        for slot in slots:
            if slot.thread is not None and not slot.abandoned:
                slot.thread.join(max(0.0, deadline - time.monotonic()))
        finished = all(s.thread is None or not s.thread.is_alive() or s.abandoned for s in slots)
        if not finished:
            log.warning(
                "%d task(s) still running after the %.0f s grace period; their leases will "
                "expire and another worker will run them again",
                sum(1 for s in slots if s.thread is not None and s.thread.is_alive()),
                grace,
            )
        self._stop.set()
        with self._watch:
            self._watch.notify_all()
        try:
            self.broker.send_control(self.id)  # wake the heartbeat thread
        except REDIS_ERRORS:
            pass
        for thread in self._helpers:
            thread.join(5)
        self._helpers.clear()
        try:
            self.broker.unregister_worker(self.id)
        except REDIS_ERRORS:
            pass
        with self._lock:
            self._slots = [s for s in self._slots if s.thread is not None and s.thread.is_alive()]
        self._running = False
        return finished

    # -- the worker thread ---------------------------------------------------------
    def _run_slot(self, slot: _Slot) -> None:
        """Lease, run, store: results are stored in the round trip that leases the next
        tasks, and a thread running fast tasks leases several at a time.

        How many: a thread prefetches (beyond the task it runs) as many tasks as it
        expects to finish within ``workers.prefetch_window`` seconds, judging by its
        recent task durations, at most ``workers.prefetch``. Slow tasks therefore
        never wait behind each other in a buffer, and a burst of tiny tasks costs
        one round trip per batch. Results of a batch are stored together, at the
        latest ``prefetch_window`` after the first of them finished.
        """
        buffer = slot.buffer
        acks: list[tuple[Delivery, bytes, int]] = []
        #: What the tasks of ``acks`` printed, for those that printed anything.
        outputs: dict[str, list[str]] = {}
        first_ack_at = 0.0
        fetched: FetchResult | None = None
        backoff = _Backoff()
        window = self.settings.workers.prefetch_window
        average = _Average()
        try:
            while not slot.abandoned:
                leaving = slot.retiring
                need_tasks = not buffer and not leaving
                flush = bool(acks) and (need_tasks or leaving or time.monotonic() - first_ack_at >= window)
                fetched = None
                if need_tasks or flush:
                    count = self._batch_size(average.value) if need_tasks else 0
                    sent = time.monotonic()
                    try:
                        stored, fetched = self.broker.ack_and_fetch(
                            acks, self.id, self.queues, count, logs=outputs
                        )
                        self._outage.recovered()
                        backoff.reset()
                    except REDIS_ERRORS as exc:
                        self._outage.failed(exc)
                        if leaving and not acks and buffer:
                            break  # the leases of the buffered tasks expire; they are redelivered
                        backoff.pause(self._stop if not leaving else threading.Event())
                        if self._stop.is_set():
                            break
                        continue
                    for (delivery, _, _), ok in zip(acks, stored, strict=True):
                        self._forget(delivery)
                        if ok:
                            self._emit("succeeded", delivery)
                        else:
                            log.warning(
                                "task %s: outcome of attempt %d discarded: its lease was lost and the "
                                "task was delivered again; the newer attempt's outcome stands",
                                delivery.id,
                                delivery.attempt,
                            )
                    acks = []
                    outputs = {}
                if fetched is not None:
                    if fetched.dropped_dead:
                        log.warning(
                            "dead-letter queue over its bound (dead_letter.max_size / ttl): "
                            "%d oldest entries dropped",
                            fetched.dropped_dead,
                        )
                    for d in fetched.deliveries:
                        self._held[d.id] = _Running(d, lease_from=sent)
                    buffer.extend(fetched.deliveries)
                if leaving:
                    break
                if not buffer:
                    self._idle_wait(fetched)
                    continue
                try:
                    delivery = buffer.popleft()
                except IndexError:  # the watchdog handed the rest back meanwhile
                    continue
                started = time.monotonic()
                if buffer and self._watch_next > started + window:
                    with self._watch:  # so it can hand the buffer back if this task is slow
                        self._watch.notify_all()
                outcome = self._execute(slot, delivery)
                average.add(time.monotonic() - started)
                if outcome is not None:
                    if not acks:
                        first_ack_at = time.monotonic()
                    acks.append(outcome[:3])
                    if outcome[3]:
                        outputs[delivery.id] = outcome[3]
        finally:
            if buffer:
                self._release(buffer)
                buffer.clear()
            with self._lock:
                if slot in self._slots and not slot.abandoned:
                    self._slots.remove(slot)

    def _batch_size(self, average_runtime: float | None) -> int:
        """1 + the tasks this thread expects to finish within the prefetch window."""
        limit = self.settings.workers.prefetch
        if limit <= 0 or average_runtime is None:
            return 1
        expected = int(self.settings.workers.prefetch_window / max(average_runtime, 1e-6))
        return 1 + max(0, min(limit, expected))

    def _idle_wait(self, fetched: FetchResult | None) -> None:
        timeout = self.settings.workers.idle_poll_seconds
        if fetched is not None and fetched.next_due_ms >= 0:
            until_due = (fetched.next_due_ms - fetched.now_ms) / 1000.0
            if until_due <= 0:
                return
            timeout = min(timeout, until_due + 0.001)
        try:
            self.broker.wait_for_work(self.queues, self.id, timeout)
        except REDIS_ERRORS as exc:
            self._outage.failed(exc)
            self._stop.wait(0.5)

    def _release(self, deliveries: deque[Delivery]) -> None:
        items = list(deliveries)
        # Forget them first: once released, another thread here may lease them again.
        for d in items:
            self._forget(d)
        try:
            self.broker.release(items)
        except REDIS_ERRORS as exc:
            log.warning(
                "could not return %d prefetched task(s) (%s); their leases will expire", len(items), exc
            )

    def _forget(self, delivery: Delivery) -> None:
        """Stop holding this delivery, not a newer delivery of the same task (which another
        thread of this process may have leased once this one was released or retried)."""
        running = self._held.get(delivery.id)
        if running is not None and running.delivery.token == delivery.token:
            self._held.pop(delivery.id, None)

    # -- running one task ----------------------------------------------------------
    def _execute(self, slot: _Slot, delivery: Delivery) -> tuple[Delivery, bytes, int, list[str]] | None:
        """Run a delivery; return what to ack, or None when its outcome is already stored."""
        running = self._held.get(delivery.id)
        now = time.monotonic()
        lapsed = running is None or running.lease_lost_at is not None
        if lapsed or now >= running.lease_from + self._lease_limit:
            # Fetched ahead, then its lease lapsed or was lost while it waited: it
            # may be running elsewhere by now, so it must not start here.
            self._forget(delivery)
            log.warning("task %s: not started, its lease was lost while it waited", delivery.id)
            return None
        running.slot = slot
        running.started = now
        if self.settings.tasks.capture_output:
            capture.ensure_installed()
            running.output = capture.OutputBuffer(self.settings.tasks.max_log_lines, delivery.attempt)
        try:
            limit = self.settings.tasks.max_payload_bytes
            if len(delivery.payload) > limit:  # not even decoded: written around the producer's check
                raise Reject(
                    f"bad-payload: {len(delivery.payload)} bytes, over tasks.max_payload_bytes ({limit})"
                )
            if not self.signer.verify(delivery.payload, delivery.signature):
                raise Reject("bad-signature: the task is unsigned or its signature does not match")
            try:
                envelope = decode(delivery.payload)
            except SerializationError as exc:
                raise Reject(f"bad-payload: {exc}") from None
            try:
                definition = self.registry.get(envelope.name)
            except TaskNotFound as exc:
                raise Reject(f"unknown-task: {exc}") from None
            running.definition = definition
            try:
                call = definition.prepare(envelope)
            except TypeError as exc:
                raise Reject(f"bad-arguments: {exc}") from None
            timeout = (
                envelope.options.get("timeout") or definition.timeout or self.settings.tasks.timeout_seconds
            )
            max_retries = envelope.options.get("max_retries")
            if isinstance(max_retries, int) and max_retries >= 0:
                running.definition = definition = _with_max_retries(definition, max_retries)
            ctx = context.TaskContext(
                delivery.id, definition.name, delivery.queue, delivery.attempt, float(timeout)
            )
            running.ctx = ctx
            self._emit("started", delivery)
            running.deadline = running.started + float(timeout)
            if running.deadline < self._watch_next:
                with self._watch:  # the watchdog sleeps past this deadline: wake it
                    self._watch.notify_all()
            context._set(ctx)
            if running.output is not None:
                capture.start(running.output)
            try:
                with slot.lock:
                    slot.current = running
                    slot.in_user_code = True
                try:
                    if running.lease_lost_at is not None:  # lost just before the call
                        raise _AsyncLeaseLost()
                    value = call()
                finally:
                    with slot.lock:
                        slot.in_user_code = False
            finally:
                context._set(None)
                capture.stop()
            if running.timed_out_at is not None:
                return None  # the watchdog stored the timeout; this late value is dropped
            runtime = int((time.monotonic() - running.started) * 1000)
            try:
                data = dumps(value, what=f"result of task {definition.name!r}")
                if len(data) > self.settings.tasks.max_result_bytes:
                    raise PayloadTooLarge(
                        len(data), self.settings.tasks.max_result_bytes, "result", "tasks.max_result_bytes"
                    )
            except SerializationError as exc:
                self._record_failure(running, exc, force="failed")
                return None
            # An empty list when the task printed nothing: the ack then sends nothing more.
            return delivery, data, runtime, running.logs()
        except TaskTimeout as exc:
            if running.timed_out_at is None:
                self._record_failure(running, exc)
            return None
        except Reject as exc:
            self._record_failure(running, exc, force="dead")
            return None
        except TaskCancelled as exc:
            if running.lease_lost_at is not None:
                # Nothing to store: the lease is gone, and the server's lease expiry
                # redelivers the task (counted, with a lease-expired history entry).
                self._forget(delivery)
                return None
            cancelled = running.ctx is not None and running.ctx.cancel_reason == "cancelled"
            self._record_failure(running, exc, force="cancelled" if cancelled else None)
            return None
        except Exception as exc:  # noqa: BLE001 - any error of user code is an outcome
            self._record_failure(running, exc)
            return None
        finally:
            with slot.lock:
                slot.current = None
            running.deadline = None

    def _record_failure(self, running: _Running, exc: BaseException, force: str | None = None) -> None:
        """Decide retry / dead / failed from the policy and store it (token-fenced)."""
        delivery = running.delivery
        policy = running.definition.retry if running.definition else RetryPolicy(max_retries=0)
        delay = 0.0
        reason = ""
        if force == "dead":
            action = "dead"
            reason = str(getattr(exc, "reason", exc))
        elif force:
            action = force
            reason = f"{type(exc).__name__}: {exc}"
        elif isinstance(exc, Retry):
            retries_left = delivery.attempt <= policy.max_retries
            action = "retry" if retries_left else "dead"
            delay = (
                exc.delay
                if exc.delay is not None
                else policy.delay(delivery.attempt, exc, self._wait_fallback)
            )
            reason = f"retries exhausted after {delivery.attempt} attempt(s): {exc}"
        elif not policy.retryable(exc):
            action, reason = "failed", f"{type(exc).__name__}: {exc} (not retried by policy)"
        elif delivery.attempt <= policy.max_retries:
            action = "retry"
            delay = policy.delay(delivery.attempt, exc, self._wait_fallback)
        else:
            action = "dead"
            reason = f"retries exhausted after {delivery.attempt} attempt(s): {type(exc).__name__}: {exc}"
        info = _exc_info(exc)
        entry = {
            **info,
            "event": "failed",
            "attempt": delivery.attempt,
            "at_ms": int(time.time() * 1000),
            "action": action,
        }
        if action == "retry":
            entry["retry_in_s"] = round(delay, 3)
        error = dumps(info, what="error")
        # Logged while the task's output is captured: the line is kept with the task
        # (handle.logs) and reaches the application's configured log handlers, but is not
        # printed into whichever notebook cell or terminal happens to be active.
        if running.output is not None:
            capture.start(running.output)
        try:
            log.log(
                logging.WARNING if action != "retry" else logging.INFO,
                "task %s (%s) attempt %d %s: %s",
                delivery.id,
                entry.get("type"),
                delivery.attempt,
                action,
                reason or exc,
            )
        finally:
            if running.output is not None:
                capture.stop()
        logs = running.logs(exc)
        runtime_ms = int((time.monotonic() - running.started) * 1000) if running.started else -1
        backoff = _Backoff()
        for _ in range(20):
            try:
                _stored, dropped = self.broker.fail(
                    delivery,
                    action=action,
                    history_entry=entry,
                    error=error,
                    delay_ms=int(delay * 1000),
                    reason=reason,
                    logs=logs,
                    runtime_ms=runtime_ms,
                )
                self._outage.recovered()
                break
            except REDIS_ERRORS as e:
                self._outage.failed(e)
                backoff.pause(self._stop)
        else:
            log.error(
                "could not record the failure of task %s; its lease will expire and it will run again",
                delivery.id,
            )
            dropped = 0
        if dropped:
            log.warning(
                "dead-letter queue %s over its bound: %d oldest entries dropped", delivery.queue, dropped
            )
        self._forget(delivery)
        self._emit(action, delivery)

    def _emit(self, event: str, delivery: Delivery) -> None:
        if self.on_event is not None:
            try:
                self.on_event(
                    event, {"id": delivery.id, "queue": delivery.queue, "attempt": delivery.attempt}
                )
            except Exception:
                log.exception("event hook failed")

    # -- heartbeat ---------------------------------------------------------------------
    def _heartbeat_once(self) -> None:
        holding = [r for r in list(self._held.values()) if r.lease_lost_at is None]
        held = [(r.delivery.id, r.delivery.token) for r in holding]
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self.queues,
            "threads": self.count(),
            "busy": self.busy(),
            "started_at": self._started_at,
            "slots": self._slot_info(),
            **self.info,
        }
        sent = time.monotonic()
        cancelled, lost = self.broker.heartbeat(
            self.id, info, held, registry_ttl=2 * self.settings.workers.heartbeat_interval
        )
        lost_ids = set(lost)
        for running in holding:
            if running.delivery.id not in lost_ids:
                running.lease_from = sent
        for task_id in cancelled:
            running = self._held.get(task_id)
            if running is not None and running.ctx is not None:
                running.ctx.cancel("cancelled")
        for task_id in lost_ids:
            running = self._held.get(task_id)
            if running is None:
                continue
            if running.started and (running.slot is None or running.slot.current is not running):
                continue  # finished: its result is in a batch being stored (which the token fences)
            self._lose_lease(running, "the server gave it to another worker")

    def _slot_info(self) -> list[dict[str, Any]]:
        """Per thread: its name and the task it runs, for the registry (metrics, monitor)."""
        now = time.monotonic()
        out = []
        with self._lock:
            slots = [s for s in self._slots if not s.abandoned]
        for slot in slots:
            running = slot.current
            entry: dict[str, Any] = {"thread": slot.thread.name if slot.thread else "", "task": None}
            if running is not None:
                entry["task"] = running.definition.name if running.definition else None
                entry["task_id"] = running.delivery.id
                entry["running_s"] = round(now - running.started, 3)
            if slot.retiring:
                entry["retiring"] = True
            out.append(entry)
        return out

    def _heartbeat_loop(self) -> None:
        """Heartbeat every interval; in between, block on this process's control list
        so that cancelling a running task reaches it at once, without polling."""
        interval = self.settings.workers.heartbeat_interval
        backoff = _Backoff(maximum=interval)
        next_beat = time.monotonic() + interval
        while not self._stop.is_set():
            try:
                remaining = next_beat - time.monotonic()
                if remaining > 0:
                    for task_id in self.broker.wait_control(self.id, min(remaining, 5.0)):
                        running = self._held.get(task_id)
                        if running is not None and running.ctx is not None:
                            running.ctx.cancel("cancelled")
                    continue
                self._heartbeat_once()
                next_beat = time.monotonic() + interval
                backoff.reset()
            except REDIS_ERRORS as exc:
                self._outage.failed(exc)
                backoff.pause(self._stop)

    # -- timeouts ----------------------------------------------------------------------
    def _watchdog_loop(self) -> None:
        grace = self.settings.tasks.timeout_grace
        window = self.settings.workers.prefetch_window
        while not self._stop.is_set():
            now = time.monotonic()
            wake_at = now + 1.0
            with self._lock:
                slots = list(self._slots)
            for slot in slots:
                running = slot.current
                if slot.buffer and running is not None:
                    if now >= running.started + window:
                        self._hand_back(slot)
                    else:
                        wake_at = min(wake_at, running.started + window)
            for running in list(self._held.values()):
                if running.deadline is not None and running.stopped_at is None:
                    lease_until = running.lease_from + self._lease_limit
                    if now >= running.deadline:
                        self._time_out(running)
                    elif now >= lease_until:
                        self._lose_lease(running, f"not renewed for {now - running.lease_from:.1f} s")
                    else:
                        wake_at = min(wake_at, running.deadline, lease_until)
                stopped_at = running.stopped_at
                if stopped_at is not None:
                    if now >= stopped_at + grace:
                        self._abandon(running)
                    else:
                        wake_at = min(wake_at, stopped_at + grace)
            with self._watch:
                self._watch_next = wake_at
                self._watch.wait(max(0.001, wake_at - time.monotonic()))

    def _hand_back(self, slot: _Slot) -> None:
        """Return a busy thread's prefetched tasks to the front of their queues, so idle
        threads (here or in other processes) run them instead of waiting behind a slow task."""
        items: list[Delivery] = []
        while True:
            try:
                items.append(slot.buffer.popleft())
            except IndexError:
                break
        if items:
            self.handed_back += len(items)
            log.debug("handing %d prefetched task(s) back: the running task is slow", len(items))
            self._release(deque(items))

    def _time_out(self, running: _Running) -> None:
        slot = running.slot
        if slot is None:
            return
        with slot.lock:
            if slot.current is not running or not slot.in_user_code:
                return  # it just returned; the normal path stores its outcome
            running.timed_out_at = time.monotonic()
            timeout = 0.0
            if running.ctx is not None:
                running.ctx.cancel("timeout")
                timeout = running.ctx.timeout_seconds
            if slot.thread is not None and slot.thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(slot.thread.ident), ctypes.py_object(_AsyncTimeout)
                )
        log.warning("task %s exceeded its timeout of %g s", running.delivery.id, timeout)
        self._record_failure(running, TaskTimeout(running.delivery.id, timeout))
        # Keep watching until it returns or is abandoned (unless a newer delivery is held).
        self._held.setdefault(running.delivery.id, running)

    def _lose_lease(self, running: _Running, why: str) -> None:
        """Stop an attempt whose lease is lost or about to be: the server will
        (or did) hand the task to another worker, and two attempts must not overlap."""
        slot = running.slot
        # The heartbeat and the watchdog may both get here: one of them acts.
        with slot.lock if slot is not None else self._lease_lock:
            if running.lease_lost_at is not None or running.timed_out_at is not None:
                return
            running.lease_lost_at = time.monotonic()
            if running.ctx is not None:
                running.ctx.cancel("lease-lost")
            if slot is not None and slot.current is running and slot.in_user_code and slot.thread is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(slot.thread.ident), ctypes.py_object(_AsyncLeaseLost)
                )
        log.warning(
            "task %s attempt %d lost its lease (%s); it is stopped here, and runs again "
            "elsewhere once the lease expires",
            running.delivery.id,
            running.delivery.attempt,
            why,
        )

    def _abandon(self, running: _Running) -> None:
        slot = running.slot
        if slot is None or slot.current is not running or slot.abandoned:
            self._forget(running.delivery)
            return
        with self._lock:
            slot.abandoned = True
            if slot in self._slots:
                self._slots.remove(slot)
            if not slot.retiring and not self._stop.is_set():
                self._spawn_locked()
        self._forget(running.delivery)
        log.error(
            "task %s ignored its %s (blocked in code that cannot be interrupted); its thread "
            "is abandoned and replaced so the pool keeps its capacity",
            running.delivery.id,
            "timeout" if running.timed_out_at is not None else "lost lease",
        )


def _with_max_retries(definition: TaskDefinition, max_retries: int) -> TaskDefinition:
    from dataclasses import replace

    return replace(definition, retry=replace(definition.retry, max_retries=max_retries))
