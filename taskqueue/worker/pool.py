"""The pool: worker threads of one process for one set of queues, and their helpers.

The pool owns the slots (one thread each) and three helper threads: the
heartbeat, the watchdog and the state publisher (``publisher.py``); it grows and shrinks on request (the
autoscaler) and stops gracefully. The work itself is done by the parts it
wires together: ``SlotLoop`` (one thread's loop), ``Executor`` (one
delivery), ``FailureRecorder``, ``Heartbeat`` and ``Watchdog``.

Why plain threads rather than ``concurrent.futures.ThreadPoolExecutor``: an
executor cannot shrink (the autoscaler needs that) and cannot replace a
thread stuck in a task that ignored its timeout (we must, so the pool keeps
its capacity). The pool here does both.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from taskqueue.broker import TaskSet
from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.broker.ports import ProgressStore, WorkerLink
from taskqueue.capture import OutputCapture
from taskqueue.config import Settings
from taskqueue.hooks import Hook, Hooks
from taskqueue.progress import ProgressReporter
from taskqueue.registry import TaskRegistry
from taskqueue.serialization import Signer
from taskqueue.worker.events import AttemptEvents
from taskqueue.worker.execute import Executor
from taskqueue.worker.failure import FailureRecorder
from taskqueue.worker.heartbeat import Heartbeat
from taskqueue.worker.publisher import StatePublisher
from taskqueue.worker.refusal import Refusals
from taskqueue.worker.slot import SlotLoop
from taskqueue.worker.state import Held, Shared, Slot
from taskqueue.worker.tasklog import TaskLog
from taskqueue.worker.watchdog import Watchdog

log = logging.getLogger("taskqueue.worker")


class WorkerPool:
    """Worker threads of one process for one set of queues."""

    def __init__(
        self,
        link: WorkerLink,
        registry: TaskRegistry,
        settings: Settings,
        queues: Sequence[str],
        signer: Signer | None = None,
        *,
        hooks: Hooks | None = None,
    ) -> None:
        self.link = link
        self.registry = registry
        self.settings = settings
        self.hooks = hooks if hooks is not None else Hooks()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._shared = Shared(link, settings, self.hooks, self.id, list(queues))
        if isinstance(link, ProgressStore):
            self._shared.progress = ProgressReporter(link)
        self._stop = self._shared.stop
        events = AttemptEvents(self.hooks, self.id)
        self._recorder = FailureRecorder(self._shared, events)
        self._executor = Executor(self._shared, registry, signer or Signer(()), events, self._recorder)
        self._watchdog = Watchdog(self._shared, self._recorder, self._live_slots, self._abandon_slot)
        self._publisher = StatePublisher(self._shared, self._live_slots, self._describe)
        beat_info = self._publisher.described
        self._heartbeat = Heartbeat(self._shared, beat_info, self._watchdog.lose_lease, self._taskset)
        self._published_set: tuple[int, tuple[str, ...], TaskSet] | None = None
        self._shared.republish = self._registry_changed
        self._events = events
        self._own_hooks = _pool_hooks(settings)
        self._slots: list[Slot] = []
        self._lock = threading.Lock()
        self._helpers: list[threading.Thread] = []
        self._started_at = time.time()
        self._running = False
        #: Extra fields published in the worker registry with each heartbeat
        #: (the autoscaler adds its state here, so metrics can show it for every process).
        self.info: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<WorkerPool {self.id} threads={self.count()} queues={','.join(self.queues)}>"

    @property
    def queues(self) -> list[str]:
        """The queues served, by priority (fewer once one is refused: see ``refused``)."""
        return self._shared.queues

    @property
    def refused(self) -> dict[str, str]:
        """Queues no longer served because Redis answered what no retry fixes: queue -> why."""
        return dict(self._shared.refusals.refused)

    @property
    def refusals(self) -> Refusals:
        """The refused queues, the event set once nothing is left, and its listeners."""
        return self._shared.refusals

    @property
    def broker(self) -> WorkerLink:
        """The link to Redis (the name callers used before the ports)."""
        return self.link

    @property
    def handed_back(self) -> int:
        """Prefetched tasks given back to their queue because the task ahead of them was slow."""
        return self._watchdog.handed_back

    @property
    def _held(self) -> Held:
        return self._shared.held

    # -- lifecycle ---------------------------------------------------------------
    def start(self, count: int) -> None:
        if self._running:
            self.resize(self.count() + count)
            return
        self._running = True
        self._stop.clear()
        for event, fn in self._own_hooks:
            self.hooks.on(event, fn)
        self.registry.listeners.append(self._registry_changed)
        try:
            self._heartbeat_once()  # publishes the task set before any thread fetches
        except REDIS_ERRORS as exc:  # e.g. out of memory: the heartbeat thread keeps trying
            self._shared.refusals.judge(exc)  # unless no retry can fix it
            self._shared.outage.failed(exc)
        helpers = (
            (self._heartbeat.loop, "heartbeat"),
            (self._watchdog.loop, "watchdog"),
            (self._publisher.loop, "state"),
        )
        for target, name in helpers:
            thread = threading.Thread(target=target, name=f"taskqueue-{name}", daemon=True)
            thread.start()
            self._helpers.append(thread)
        self.resize(count)
        try:
            self._heartbeat_once()  # again, so the registry shows the threads now, not a heartbeat later
        except REDIS_ERRORS:
            pass  # the heartbeat thread retries
        self._events.worker("worker_started", queues=list(self.queues), threads=count)

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
        finished = self._join_slots(slots, grace)
        self._stop.set()
        if self._shared.progress is not None:
            self._shared.progress.close()
        self._shared.watch.wake()
        self._shared.activity.set()  # the state publisher may be blocked on it
        try:
            self.link.send_control(self.id)  # wake the heartbeat thread
        except REDIS_ERRORS:
            pass
        for thread in self._helpers:
            thread.join(5)
        self._helpers.clear()
        try:
            self.link.unregister_worker(self.id)
        except REDIS_ERRORS:
            pass
        with self._lock:
            self._slots = [s for s in self._slots if s.thread is not None and s.thread.is_alive()]
        self._running = False
        if self._registry_changed in self.registry.listeners:
            self.registry.listeners.remove(self._registry_changed)
        self._events.worker("worker_stopped", queues=list(self.queues), finished=finished)
        for event, fn in self._own_hooks:
            self.hooks.off(event, fn)
        return finished

    def _join_slots(self, slots: list[Slot], grace: float) -> bool:
        """Wait up to ``grace`` seconds for the slots' threads; True when all ended."""
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
        return finished

    # -- slots -------------------------------------------------------------------
    def _spawn_locked(self) -> None:
        slot = Slot()
        loop = SlotLoop(self._shared, self._executor, slot, self._slot_left)
        slot.thread = threading.Thread(target=loop.run, name=f"taskqueue-worker-{slot.number}", daemon=True)
        self._slots.append(slot)
        slot.thread.start()

    def _slot_left(self, slot: Slot) -> None:
        with self._lock:
            if slot in self._slots and not slot.abandoned:
                self._slots.remove(slot)

    def _live_slots(self) -> list[Slot]:
        with self._lock:
            return list(self._slots)

    def _abandon_slot(self, slot: Slot) -> None:
        """Give up a thread stuck in a task; a new one takes its place."""
        with self._lock:
            slot.abandoned = True
            if slot in self._slots:
                self._slots.remove(slot)
            if not slot.retiring and not self._stop.is_set():
                self._spawn_locked()

    def _wake_idle(self, count: int) -> None:
        try:
            self.link.wake_workers(self.id, count)
        except REDIS_ERRORS:
            pass  # they notice within idle_poll_seconds anyway

    # -- registry entry ------------------------------------------------------------
    def _heartbeat_once(self) -> None:
        self._heartbeat.once()

    def _taskset(self) -> TaskSet:
        """What this process serves, rebuilt only when the registry changed."""
        version, queues = self.registry.version, tuple(self.queues)
        if self._published_set is None or self._published_set[:2] != (version, queues):
            definitions = {d.name: d.published() for d in self.registry.definitions()}
            self._published_set = (version, queues, TaskSet.of(list(queues), definitions))
        return self._published_set[2]

    def _registry_changed(self) -> None:
        """Publish the task set now: a task was defined after the workers started (a
        notebook cell), or a fetch found the set gone from Redis (expired, flushed)."""
        try:
            self._heartbeat_once()
        except REDIS_ERRORS as exc:
            self._shared.outage.failed(exc)  # the heartbeat thread publishes it later

    def _describe(self) -> dict[str, Any]:
        """What the heartbeat publishes about this process (metrics, monitor, autoscalers)."""
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self.queues,
            **({"refused": self.refused} if self._shared.refusals.refused else {}),
            "threads": self.count(),
            "busy": self.busy(),
            "started_at": self._started_at,
            "slots": self._slot_info(),
            **self.info,
        }

    def _slot_info(self) -> list[dict[str, Any]]:
        """Per thread: its name and the task it runs, for the registry (metrics, monitor)."""
        now = time.monotonic()
        out = []
        with self._lock:
            slots = [s for s in self._slots if not s.abandoned]
        wall = time.time()
        for slot in slots:
            running = slot.current
            entry: dict[str, Any] = {"thread": slot.thread.name if slot.thread else "", "task": None}
            if running is not None:
                entry["task"] = running.definition.name if running.definition else None
                entry["task_id"] = running.delivery.id
                entry["running_s"] = round(now - running.started, 3)
                # readers add the time since publication, so "running for" stays true between writes
                entry["since"] = round(wall - (now - running.started), 3)
            if slot.retiring:
                entry["retiring"] = True
            out.append(entry)
        return out


def _pool_hooks(settings: Settings) -> list[tuple[str, Hook]]:
    """The hooks every pool registers, in order: output capture around the worker's own
    log line, so the line of a failure is kept with the task (and not printed into
    whichever notebook cell is active), while a success line is not stored."""
    task_log = TaskLog()
    hooks: list[tuple[str, Hook]] = []
    capture = OutputCapture(settings.tasks.max_log_lines) if settings.tasks.capture_output else None
    if capture is not None:
        hooks.append(("task_started", capture.started))
        hooks.append(("task_succeeded", capture.finish))
    # A success line is DEBUG: it is written when DEBUG was on for taskqueue.worker as the
    # workers started, so that otherwise a success builds no event unless somebody listens.
    if log.isEnabledFor(logging.DEBUG):
        hooks.append(("task_succeeded", task_log.succeeded))
    for event, write in (("task_failed", task_log.failed), ("task_cancelled", task_log.cancelled)):
        if capture is not None:
            hooks.append((event, capture.resume))
        hooks.append((event, write))
        if capture is not None:
            hooks.append((event, capture.finish))
    return hooks


__all__ = ["WorkerPool"]
