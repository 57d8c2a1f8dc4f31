"""Every error taskqueue raises on purpose is a ``TaskQueueError``.

One base class lets callers write a single ``except TaskQueueError`` around
queue calls; the subclasses carry the fields a caller needs to react
(which task, which key, which limit) instead of only a message.
"""

from __future__ import annotations

from typing import Any


class TaskQueueError(Exception):
    """Base class of every taskqueue error."""


class BrokerError(TaskQueueError):
    """Redis was unreachable or answered with an error.

    ``url`` never contains a password: it is masked before the error is built.
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(f"{message} (redis: {url})" if url else message)


class TaskNotFound(TaskQueueError):
    """A task name that no registered task answers to, or an unknown task id."""


class TaskFailed(TaskQueueError):
    """The task ran and failed for good; carries the remote error.

    ``error_type`` is the qualified name of the exception raised in the
    worker, ``remote_traceback`` its formatted traceback, so a caller in
    another process sees what happened without unpickling anything.
    """

    def __init__(
        self,
        task_id: str,
        error_type: str,
        message: str,
        remote_traceback: str = "",
        status: str = "FAILED",
    ) -> None:
        self.task_id = task_id
        self.error_type = error_type
        self.error_message = message
        self.remote_traceback = remote_traceback
        self.status = status
        text = f"task {task_id} {status.lower()}: {error_type}: {message}"
        if remote_traceback:
            text += "\n\nRemote traceback:\n" + remote_traceback.rstrip()
        super().__init__(text)


class TaskTimeout(TaskQueueError):
    """An attempt ran longer than its ``timeout_seconds``."""

    def __init__(self, task_id: str, timeout_seconds: float) -> None:
        self.task_id = task_id
        self.timeout_seconds = timeout_seconds
        super().__init__(f"task {task_id} exceeded its timeout of {timeout_seconds:g} s")


class TaskCancelled(TaskQueueError):
    """The task was cancelled before it could finish."""


class SerializationError(TaskQueueError):
    """A value cannot be encoded as msgpack, or bytes cannot be decoded."""


class PayloadTooLarge(SerializationError):
    """The encoded task is larger than ``tasks.max_payload_bytes``."""

    def __init__(
        self, size: int, limit: int, what: str = "task payload", setting: str = "tasks.max_payload_bytes"
    ) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} is {size} bytes, over the limit of {limit} bytes "
            f"(raise {setting}, or pass a reference such as a path or key instead)"
        )


class ConfigurationError(TaskQueueError):
    """One or more settings are invalid; ``problems`` lists each of them.

    ``details`` holds the same problems as ``taskqueue.config.Problem`` objects
    (key, value, source, rule) when they come from loading settings.
    """

    def __init__(self, problems: list[str] | str, *, details: list[Any] | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.details = list(details or [])
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            super().__init__(f"{len(self.problems)} configuration problems:\n{lines}")


class Retry(Exception):
    """Raise inside a task to ask for another attempt after ``delay`` seconds."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        self.delay = delay
        self.reason = reason
        super().__init__(reason or "retry requested")


class RateLimited(Exception):
    """Raise inside a task when an upstream refused it for now (an HTTP 429, say): the
    attempt goes back to Redis and runs again after ``delay`` seconds, without counting
    against ``max_retries``; the task's history records it (event ``failed``, action
    ``ratelimited``)."""

    def __init__(self, delay: float, reason: str = "") -> None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay < float("inf"):
            raise ValueError(f"RateLimited(delay=...) takes a number of seconds >= 0, got {delay!r}")
        self.delay = float(delay)
        self.reason = reason
        super().__init__(reason or f"rate limited: run again in {self.delay:g} s")


class Reject(Exception):
    """Raise inside a task to send it straight to the dead-letter queue."""

    def __init__(self, reason: str = "rejected by the task") -> None:
        self.reason = reason
        super().__init__(reason)


def describe(value: Any, limit: int = 80) -> str:
    """A short repr for error messages, so a huge bad value does not flood a log."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
