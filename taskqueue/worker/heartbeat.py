"""The heartbeat: registers the process and renews the leases of held tasks.

Every ``workers.heartbeat_interval`` one round trip publishes what this
process is (queues, threads, what each runs) and renews the leases it holds;
the reply names the tasks cancelled meanwhile and the leases already lost.
In between, the thread blocks on the process's control list, so cancelling a
running task reaches it at once, without polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from taskqueue.broker import TaskSet
from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.broker.ports import Dependencies
from taskqueue.worker.state import Attempt, Backoff, Shared

#: Workflow notices older than this are relayed by any heartbeat (younger ones are being
#: relayed by the worker that stored the outcome; relaying twice changes nothing).
RELAY_AGE_MS = 2000


class Heartbeat:
    """One pool's heartbeat: ``once()`` is a beat, ``loop()`` the thread that beats."""

    def __init__(
        self,
        shared: Shared,
        describe: Callable[[], dict[str, Any]],
        lose_lease: Callable[[Attempt, str], None],
        taskset: Callable[[], TaskSet] | None = None,
    ) -> None:
        self.shared = shared
        self._describe = describe
        self._lose_lease = lose_lease
        self._taskset = taskset

    def once(self) -> None:
        """Publish the process and renew its leases; act on cancellations and lost leases."""
        shared = self.shared
        holding = [a for a in shared.held.all() if a.lease_lost_at is None]
        held = [(a.delivery.id, a.delivery.token, a.delivery.queue) for a in holding]
        sent = time.monotonic()
        taskset = self._taskset() if self._taskset is not None else None
        cancelled, lost = shared.link.heartbeat(
            shared.worker_id,
            self._describe(),
            held,
            registry_ttl=2 * shared.settings.workers.heartbeat_interval,
            taskset=taskset,
        )
        shared.taskset = taskset  # fetches lease by it once Redis knows it
        if isinstance(shared.link, Dependencies):  # cluster: notices a dead worker left behind
            shared.link.relay(shared.queues, min_age_ms=RELAY_AGE_MS)
        lost_ids = set(lost)
        for attempt in holding:
            if attempt.delivery.id not in lost_ids:
                attempt.lease_from = sent
        for task_id in cancelled:
            self._cancel(task_id)
        for task_id in lost_ids:
            lost_attempt = shared.held.get(task_id)
            if lost_attempt is None:
                continue
            slot = lost_attempt.slot
            if lost_attempt.started and (slot is None or slot.current is not lost_attempt):
                continue  # finished: its result is in a batch being stored (which the token fences)
            self._lose_lease(lost_attempt, "the server gave it to another worker")

    def loop(self) -> None:
        shared = self.shared
        interval = shared.settings.workers.heartbeat_interval
        backoff = Backoff(maximum=interval)
        next_beat = time.monotonic() + interval
        while not shared.stop.is_set():
            try:
                remaining = next_beat - time.monotonic()
                if remaining > 0:
                    for task_id in shared.link.wait_control(shared.worker_id, min(remaining, 5.0)):
                        self._cancel(task_id)
                    continue
                self.once()
                next_beat = time.monotonic() + interval
                backoff.reset()
            except REDIS_ERRORS as exc:
                # What no retry fixes stops the queues it concerns; the beat goes on (slower)
                # so the registry shows what was refused once Redis takes the beat again.
                shared.refusals.judge(exc)
                shared.outage.failed(exc)
                backoff.pause(shared.stop)

    def _cancel(self, task_id: str) -> None:
        """Ask a running task to stop (cooperatively: it sees ``current_task().cancelled``);
        one still waiting in a slot's buffer is never started."""
        attempt = self.shared.held.get(task_id)
        if attempt is None:
            return
        attempt.cancel_requested = True
        if attempt.ctx is not None:
            attempt.ctx.cancel("cancelled")


__all__ = ["Heartbeat"]
