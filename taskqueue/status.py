"""Task states: the one home of what each status means and which are final."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "PENDING"  # in its queue (or leased into a worker's prefetch buffer, not started)
    SCHEDULED = "SCHEDULED"  # waiting for its due time
    WAITING = "WAITING"  # waiting for its dependencies (a workflow, depends_on); never in a worker
    RUNNING = "RUNNING"  # its code has started in a worker
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # failed for good, by a non-retryable error (not dead-lettered)
    RETRYING = "RETRYING"  # an attempt failed; the next one is scheduled
    DEAD = "DEAD"  # in the dead-letter queue: retries spent, rejected, or bad input
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


#: States a task never leaves (its outcome is stored; result() returns or raises).
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "DEAD", "CANCELLED"})

#: A status stored in Redis that readers never see: LEASED is a task in a worker's
#: prefetch buffer, whose code has not started, so it reads PENDING (DESIGN 9).
_AS_READ = {"LEASED": "PENDING"}


#: Stored states of a task a worker holds: cancel() can only ask that worker to stop it.
STARTED_OR_HELD = frozenset({"RUNNING", "LEASED"})


def as_read(stored: str) -> str:
    """The status a reader sees for the status stored in the task's hash."""
    return _AS_READ.get(stored, stored)


__all__ = ["FINAL_STATES", "STARTED_OR_HELD", "TaskStatus", "as_read"]
