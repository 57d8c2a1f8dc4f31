"""One worker thread's loop: lease, run, store, in as few round trips as it can.

Results are stored in the round trip that leases the next tasks, and a
thread running fast tasks leases several at a time: it prefetches (beyond
the task it runs) as many tasks as it expects to finish within
``workers.prefetch_window`` seconds, judging by its recent task durations,
at most ``workers.prefetch``. Slow tasks therefore never wait behind each
other in a buffer, and a burst of tiny tasks costs one round trip per batch.
Results of a batch are stored together, at the latest ``prefetch_window``
after the first of them finished. An idle thread blocks on a Redis wake-up
list instead of polling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from taskqueue.broker import Delivery, FetchResult
from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.broker.ports import Ack
from taskqueue.worker.execute import Executor
from taskqueue.worker.state import Attempt, Average, Backoff, Shared, Slot

log = logging.getLogger("taskqueue.worker")


class SlotLoop:
    """The loop of one slot's thread (``run``), in named steps."""

    def __init__(self, shared: Shared, executor: Executor, slot: Slot, leave: Callable[[Slot], None]) -> None:
        self.shared = shared
        self.executor = executor
        self.slot = slot
        self._leave = leave
        self.acks: list[Ack] = []
        #: What the tasks of ``acks`` printed, for those that printed anything.
        self.outputs: dict[str, list[str]] = {}
        self.first_ack_at = 0.0
        self.backoff = Backoff()
        self.average = Average()
        #: The last fetch found the task set missing and this thread published it again.
        self.republished = False

    def run(self) -> None:
        slot, shared = self.slot, self.shared
        try:
            while not slot.abandoned and shared.queues:  # none left: see Refusals
                leaving = slot.retiring
                fetched: FetchResult | None = None
                if self._exchange_due(leaving):
                    step, fetched = self._exchange(leaving)
                    if step == "leave":
                        break
                    if step == "again":
                        continue
                if leaving:
                    break
                if not slot.buffer:
                    self._idle_wait(fetched)
                    continue
                self._run_next()
        finally:
            if slot.buffer:
                self.shared.release(list(slot.buffer))
                slot.buffer.clear()
            self._leave(slot)

    # -- the steps -------------------------------------------------------------------
    def _exchange_due(self, leaving: bool) -> bool:
        """Time for a round trip: tasks are needed, or results have waited long enough."""
        need_tasks = not self.slot.buffer and not leaving
        window = self.shared.settings.workers.prefetch_window
        flush = bool(self.acks) and (need_tasks or leaving or time.monotonic() - self.first_ack_at >= window)
        return need_tasks or flush

    def _exchange(self, leaving: bool) -> tuple[Literal["ok", "again", "leave"], FetchResult | None]:
        """Store the batch's results and lease more tasks, in one round trip."""
        shared = self.shared
        need_tasks = not self.slot.buffer and not leaving
        count = self._batch_size() if need_tasks else 0
        sent = time.monotonic()
        queues = shared.queues  # as sent: another thread may stop one meanwhile
        try:
            stored, fetched = shared.link.ack_and_fetch(
                self.acks, shared.worker_id, queues, count, logs=self.outputs, taskset=shared.taskset
            )
            shared.outage.recovered()
            self.backoff.reset()
        except REDIS_ERRORS as exc:
            if shared.refusals.judge(exc, queues if count > 0 else None):
                self._drop_refused()
                return ("leave" if not shared.queues else "again"), None  # nothing to retry
            shared.outage.failed(exc)
            if leaving and not self.acks and self.slot.buffer:
                return "leave", None  # the leases of the buffered tasks expire; they are redelivered
            self.backoff.pause(shared.stop if not leaving else threading.Event())
            return ("leave" if shared.stop.is_set() else "again"), None
        self._acknowledged(stored)
        if fetched is not None:
            if fetched.taskset_missing:
                if self.republished:  # publishing did not bring it back: do not spin
                    self.backoff.pause(shared.stop)
                shared.republish()
                self.republished = True
                return "again", fetched
            self.republished = False
            self._take(fetched, sent)
        return "ok", fetched

    def _drop_refused(self) -> None:
        """Forget the outcomes of tasks of queues no longer served: they cannot be stored (their
        leases expire, and the tasks wait in Redis until the cause is fixed)."""
        kept = [ack for ack in self.acks if ack[0].queue in self.shared.queues]
        for delivery, _, _ in self.acks:
            if delivery.queue not in self.shared.queues:
                self.shared.held.forget(delivery)
                self.outputs.pop(delivery.id, None)
                log.warning(
                    "task %s: outcome not stored (queue %r no longer served)", delivery.id, delivery.queue
                )
        self.acks = kept

    def _acknowledged(self, stored: list[bool]) -> None:
        for (delivery, _, _), ok in zip(self.acks, stored, strict=True):
            self.shared.held.forget(delivery)
            if not ok:
                log.warning(
                    "task %s: outcome of attempt %d discarded: its lease was lost and the "
                    "task was delivered again; the newer attempt's outcome stands",
                    delivery.id,
                    delivery.attempt,
                )
        self.acks = []
        self.outputs = {}

    def _take(self, fetched: FetchResult, sent: float) -> None:
        """Hold the leased deliveries and queue them in this slot's buffer."""
        if fetched.dropped_dead:
            log.warning(
                "dead-letter queue over its bound (dead_letter.max_size / ttl): %d oldest entries dropped",
                fetched.dropped_dead,
            )
        for delivery in fetched.deliveries:
            self.shared.held.add(Attempt(delivery, lease_from=sent))
        self.slot.buffer.extend(fetched.deliveries)

    def _run_next(self) -> None:
        """Run the next buffered task and keep its ack for the next round trip."""
        slot = self.slot
        try:
            delivery: Delivery = slot.buffer.popleft()
        except IndexError:  # the watchdog handed the rest back meanwhile
            return
        started = time.monotonic()
        if slot.buffer:  # so it can hand the buffer back if this task is slow
            self.shared.watch.wake_before(started + self.shared.settings.workers.prefetch_window)
        outcome = self.executor.run(slot, delivery)
        self.average.add(time.monotonic() - started)
        if outcome is not None:
            ack, logs = outcome
            if not self.acks:
                self.first_ack_at = time.monotonic()
            self.acks.append(ack)
            if logs:
                self.outputs[delivery.id] = logs

    def _batch_size(self) -> int:
        """1 + the tasks this thread expects to finish within the prefetch window."""
        workers = self.shared.settings.workers
        average_runtime = self.average.value
        if workers.prefetch <= 0 or average_runtime is None:
            return 1
        expected = int(workers.prefetch_window / max(average_runtime, 1e-6))
        return 1 + max(0, min(workers.prefetch, expected))

    def _idle_wait(self, fetched: FetchResult | None) -> None:
        shared = self.shared
        timeout = shared.settings.workers.idle_poll_seconds
        if fetched is not None and fetched.next_due_ms >= 0:
            until_due = (fetched.next_due_ms - fetched.now_ms) / 1000.0
            if until_due <= 0:
                return
            timeout = min(timeout, until_due + 0.001)
        queues = shared.queues
        try:
            shared.link.wait_for_work(queues, shared.worker_id, timeout, taskset=shared.taskset)
        except REDIS_ERRORS as exc:
            if shared.refusals.judge(exc, queues):
                return
            shared.outage.failed(exc)
            shared.stop.wait(0.5)


__all__ = ["SlotLoop"]
