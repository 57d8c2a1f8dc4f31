"""The watchdog: timeouts, leases given up in time, abandoned threads, slow buffers.

One thread per pool sleeps until the next thing it must check:

- a task over its timeout is recorded as failed with ``TaskTimeout`` (and
  retried or dead-lettered per its policy), and ``TaskTimeout`` is raised
  inside its thread;
- a lease not renewed for ``lease_limit`` seconds is given up here, a margin
  before the server may hand the task to another worker, so two attempts of
  one task do not overlap;
- a thread that ignores the exception for ``tasks.timeout_grace`` seconds
  (blocked in C) is abandoned and its slot replaced, so the pool keeps its
  capacity;
- the prefetched tasks of a thread whose running task turned out slow go
  back to their queue, for idle threads to run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from taskqueue.broker import Delivery
from taskqueue.errors import TaskTimeout
from taskqueue.worker.failure import FailureRecorder
from taskqueue.worker.interrupt import AsyncLeaseLost, AsyncTimeout, raise_in
from taskqueue.worker.state import Attempt, Shared, Slot

log = logging.getLogger("taskqueue.worker")
#: Taken by a lease loss of an attempt that has no slot yet (the heartbeat and the watchdog may race).
_no_slot_lock = threading.Lock()


class Watchdog:
    """Stops attempts that must stop; see the module docstring."""

    def __init__(
        self,
        shared: Shared,
        recorder: FailureRecorder,
        slots: Callable[[], list[Slot]],
        abandon_slot: Callable[[Slot], None],
    ) -> None:
        self.shared = shared
        self.recorder = recorder
        self._slots = slots
        self._abandon_slot = abandon_slot
        #: Prefetched tasks given back to their queue because the task ahead of them was slow.
        self.handed_back = 0

    def loop(self) -> None:
        while not self.shared.stop.is_set():
            now = time.monotonic()
            wake_at = min(now + 1.0, self._check_buffers(now), self._check_attempts(now))
            self.shared.watch.sleep_until(wake_at)

    def _check_buffers(self, now: float) -> float:
        """Hand back the buffers of slots busy for longer than the prefetch window."""
        window = self.shared.settings.workers.prefetch_window
        wake_at = float("inf")
        for slot in self._slots():
            running = slot.current
            if slot.buffer and running is not None:
                if now >= running.started + window:
                    self.hand_back(slot)
                else:
                    wake_at = min(wake_at, running.started + window)
        return wake_at

    def _check_attempts(self, now: float) -> float:
        """Time out, give up leases, abandon threads; returns when to look again."""
        grace = self.shared.settings.tasks.timeout_grace
        wake_at = float("inf")
        for attempt in self.shared.held.all():
            if attempt.deadline is not None and attempt.stopped_at is None:
                lease_until = attempt.lease_from + self.shared.lease_limit
                if now >= attempt.deadline:
                    self.time_out(attempt)
                elif now >= lease_until:
                    self.lose_lease(attempt, f"not renewed for {now - attempt.lease_from:.1f} s")
                else:
                    wake_at = min(wake_at, attempt.deadline, lease_until)
            stopped_at = attempt.stopped_at
            if stopped_at is not None:
                if now >= stopped_at + grace:
                    self.abandon(attempt)
                else:
                    wake_at = min(wake_at, stopped_at + grace)
        return wake_at

    def hand_back(self, slot: Slot) -> None:
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
            self.shared.release(items)

    def time_out(self, attempt: Attempt) -> None:
        slot = attempt.slot
        if slot is None:
            return
        with slot.lock:
            if slot.current is not attempt or not slot.in_user_code:
                return  # it just returned; the normal path stores its outcome
            attempt.timed_out_at = time.monotonic()
            timeout = 0.0
            if attempt.ctx is not None:
                attempt.ctx.cancel("timeout")
                timeout = attempt.ctx.timeout_seconds
            attempt.stop_reason = f"over its timeout of {timeout:g} s"
            raise_in(slot.thread, AsyncTimeout)
        self.recorder.record(attempt, TaskTimeout(attempt.delivery.id, timeout))
        # Keep watching until it returns or is abandoned (unless a newer delivery is held).
        self.shared.held.keep(attempt)

    def lose_lease(self, attempt: Attempt, why: str) -> None:
        """Stop an attempt whose lease is lost or about to be: the server will
        (or did) hand the task to another worker, and two attempts must not overlap."""
        slot = attempt.slot
        # The heartbeat and the watchdog may both get here: one of them acts.
        with slot.lock if slot is not None else _no_slot_lock:
            if attempt.lease_lost_at is not None or attempt.timed_out_at is not None:
                return
            attempt.lease_lost_at = time.monotonic()
            attempt.stop_reason = why
            if attempt.ctx is not None:
                attempt.ctx.cancel("lease-lost")
            if slot is not None and slot.current is attempt and slot.in_user_code:
                raise_in(slot.thread, AsyncLeaseLost)
        self.recorder.lease_lost(attempt)  # the hooks' line names the task, attempt and why

    def abandon(self, attempt: Attempt) -> None:
        slot = attempt.slot
        if slot is None or slot.current is not attempt or slot.abandoned:
            self.shared.held.forget(attempt.delivery)
            return
        self._abandon_slot(slot)
        self.shared.held.forget(attempt.delivery)
        log.error(
            "task %s attempt %d ignored its %s (blocked in code that cannot be interrupted); its "
            "thread is abandoned and replaced so the pool keeps its capacity",
            attempt.delivery.id,
            attempt.delivery.attempt,
            "timeout" if attempt.timed_out_at is not None else "lost lease",
        )


__all__ = ["Watchdog"]
