"""Retry policies: when a failed attempt is tried again, and after how long.

The waits are tenacity wait strategies (``wait_exponential_jitter``,
``wait_fixed``, ``wait_random_exponential``... or any callable taking a
``tenacity.RetryCallState``), so users configure backoff with a library they
already know. The worker only asks the policy for a number of seconds; the
retry itself is scheduled in Redis, never slept in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tenacity

from taskqueue.config import TaskSettings
from taskqueue.errors import TaskTimeout

WaitStrategy = Callable[[tenacity.RetryCallState], float]


def default_wait(settings: TaskSettings) -> WaitStrategy:
    """Exponential backoff with jitter: initial * 2**(attempt-1), capped, plus jitter."""
    return tenacity.wait_exponential_jitter(
        multiplier=settings.retry_backoff_initial,
        max=settings.retry_backoff_max,
        jitter=settings.retry_jitter,
    )


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    #: None: the queue-wide default from settings (exponential with jitter).
    wait: WaitStrategy | None = None
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    dont_retry_on: tuple[type[BaseException], ...] = field(default=())

    def retryable(self, exc: BaseException) -> bool:
        """Whether this kind of error is worth another attempt at all."""
        if isinstance(exc, self.dont_retry_on):
            return False
        return isinstance(exc, (*self.retry_on, TaskTimeout))

    def delay(self, attempt: int, exc: BaseException | None, fallback: WaitStrategy) -> float:
        """Seconds to wait before attempt number ``attempt + 1``."""
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt)
        if exc is not None:
            state.outcome = tenacity.Future.construct(attempt, exc, True)
        return max(0.0, float((self.wait or fallback)(state)))


def as_exception_types(value: Any, option: str) -> tuple[type[BaseException], ...]:
    """Accept one exception class or an iterable of them; refuse anything else clearly."""
    if value is None:
        return ()
    items = value if isinstance(value, (tuple, list, set, frozenset)) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"{option} takes exception classes, got {item!r}")
    return tuple(items)
