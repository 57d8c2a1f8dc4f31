"""What a task id and a queue name may be: one home for each check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskqueue.errors import ConfigurationError

if TYPE_CHECKING:
    from taskqueue.config import Settings

#: Longest task id accepted; braces are refused because they would change a Redis Cluster hash tag.
MAX_TASK_ID = 128


def valid_task_id(task_id: object) -> bool:
    return isinstance(task_id, str) and 0 < len(task_id) <= MAX_TASK_ID and not ({"{", "}"} & set(task_id))


def task_id_rule() -> str:
    return f"a task id is a non-empty string of at most {MAX_TASK_ID} characters without braces"


def check_queue(settings: Settings, queue: object) -> str:
    """``queue`` when it is configured, else a ConfigurationError that says how to add it."""
    if not isinstance(queue, str) or queue not in settings.queues:
        known = ", ".join(settings.queues_by_priority())
        raise ConfigurationError(
            f"unknown queue {queue!r}; configured queues are {known}. "
            f"Add it to settings as [queues.{queue}] priority = N"
        )
    return queue


__all__ = ["MAX_TASK_ID", "check_queue", "task_id_rule", "valid_task_id"]
