"""Reading and administering one namespace: dead letters, purges, pauses, metrics.

``QueueAdmin`` needs only the producer and inspection ports and the settings
(for the queue names), never the tasks' code or a worker, so a CLI or a web
app can administer a namespace it does not run. ``TaskQueue`` is one (it
adds the tasks, the producer side and this process's workers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskqueue import dead_letters as dead
from taskqueue.handle import DeadLetter, TaskHandle
from taskqueue.identifiers import check_queue
from taskqueue.outcome import missing

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection, Producer
    from taskqueue.config import Settings
    from taskqueue.metrics import TaskQueueMetrics


class QueueAdmin:
    """The administration of one namespace through its ports (see the module docstring)."""

    settings: Settings

    def __init__(self, producer: Producer, inspection: Inspection, settings: Settings) -> None:
        self._producer = producer
        self._inspection = inspection
        self.settings = settings

    def _queues_or(self, queue: str | None) -> list[str]:
        if queue is None:
            return self.settings.queues_by_priority()
        return [check_queue(self.settings, queue)]

    def get(self, task_id: str) -> TaskHandle:
        """A handle for a task id obtained elsewhere (another process, a log line)."""
        record = self._producer.get_task(task_id)
        if record is None:
            raise missing(task_id)
        return TaskHandle(self._producer, task_id, record.name)

    def dead_letters(self, queue: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Dead tasks, oldest first, with their reason and last error."""
        return dead.dead_letters(self._producer, self._inspection, self._queues_or(queue), limit)

    def requeue_dead(self, task_id: str | None = None, *, queue: str | None = None) -> int:
        """Put one dead task (or all, or all of a queue) back in its queue, attempts reset."""
        return dead.requeue_dead(self._producer, self._inspection, self._queues_or(queue), task_id)

    def purge_dead(self, queue: str | None = None) -> int:
        """Delete the dead letters (of one queue, or all); returns how many were removed."""
        return sum(self._inspection.purge_dead(q) for q in self._queues_or(queue))

    def purge(self, queue: str) -> int:
        """Delete every pending task of a queue; returns how many were removed."""
        return self._inspection.purge_queue(check_queue(self.settings, queue))

    def pending(self, queue: str | None = None) -> dict[str, int]:
        """Pending tasks per queue (one queue, or all)."""
        return self._inspection.queue_lengths(self._queues_or(queue))

    def pause(self, queue: str) -> None:
        """Workers (in every process) stop taking from this queue until resume()."""
        self._inspection.pause(check_queue(self.settings, queue), True)

    def resume(self, queue: str) -> None:
        self._inspection.pause(check_queue(self.settings, queue), False)

    def pause_periodic(self, name: str) -> None:
        """Pause a registered periodic task: schedulers (in every process) claim its slots and
        skip them (counted as skipped) until ``resume_periodic``; then its next slot runs."""
        self._periodic_pause(name, True)

    def resume_periodic(self, name: str) -> None:
        self._periodic_pause(name, False)

    def _periodic_pause(self, name: str, paused: bool) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a periodic task's name (a non-empty string), got {name!r}")
        if not self._inspection.pause_periodic(name, paused):
            raise ValueError(
                f"no periodic task {name!r} is registered in Redis; q.periodic_tasks() lists them "
                "(a scheduler registers this process's definitions when it starts)"
            )

    def get_metrics(self) -> TaskQueueMetrics:
        """Counters, latency percentiles and workers of the whole namespace, from Redis
        (every worker process on the server), in two round trips."""
        from taskqueue.metrics import get_metrics

        return get_metrics(self._inspection, self.settings)


__all__ = ["QueueAdmin"]
