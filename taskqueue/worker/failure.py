"""Recording a failed attempt: retry, dead, failed or cancelled, and storing it.

The decision is a pure function of the error, the attempt number and the
task's retry policy (``decide``), so it can be read, and tested, apart from
the Redis call that stores it. Storing is fenced by the lease token: a late
answer from an attempt whose lease was lost never overwrites the newer one.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any

from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.errors import RateLimited, Retry
from taskqueue.retry import RetryPolicy, WaitStrategy, default_wait
from taskqueue.serialization import dumps
from taskqueue.worker.events import AttemptEvents
from taskqueue.worker.interrupt import AsyncLeaseLost
from taskqueue.worker.state import Attempt, Backoff, Shared

log = logging.getLogger("taskqueue.worker")

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
#: Tries to store one outcome while Redis fails, before leaving it to the lease's expiry.
STORE_TRIES = 20


def exc_info(exc: BaseException) -> dict[str, Any]:
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


@dataclass(frozen=True, slots=True)
class Decision:
    """What a failed attempt leads to: ``action`` is "retry", "dead", "failed", "cancelled" or
    "ratelimited" (``RateLimited``: back in Redis for ``delay`` s, the attempt not counted)."""

    action: str
    delay: float = 0.0
    #: Stored with a final outcome (the dead letter's reason); "" for a plain retry.
    reason: str = ""


def decide(
    exc: BaseException, attempt: int, policy: RetryPolicy, fallback: WaitStrategy, force: str | None = None
) -> Decision:
    """The policy's answer to ``exc`` on attempt number ``attempt``.

    ``force`` overrides the policy: "dead" for a rejected task (the reason is the
    rejection's), "failed" for a result that cannot be stored, "cancelled".
    """
    if force == "dead":
        return Decision("dead", reason=str(getattr(exc, "reason", exc)))
    if force:
        return Decision(force, reason=f"{type(exc).__name__}: {exc}")
    if isinstance(exc, RateLimited):
        return Decision("ratelimited", exc.delay)
    retries_left = attempt <= policy.max_retries
    if isinstance(exc, Retry):
        delay = exc.delay if exc.delay is not None else policy.delay(attempt, exc, fallback)
        reason = f"retries exhausted after {attempt} attempt(s): {exc}"
        return Decision("retry", delay, reason) if retries_left else Decision("dead", delay, reason)
    if not policy.retryable(exc):
        return Decision("failed", reason=f"{type(exc).__name__}: {exc} (not retried by policy)")
    if retries_left:
        return Decision("retry", policy.delay(attempt, exc, fallback))
    return Decision(
        "dead", reason=f"retries exhausted after {attempt} attempt(s): {type(exc).__name__}: {exc}"
    )


class FailureRecorder:
    """Decides and stores failed attempts, and emits their events."""

    def __init__(self, shared: Shared, events: AttemptEvents) -> None:
        self.shared = shared
        self.events = events
        self._fallback = default_wait(shared.settings.tasks)

    def record(self, attempt: Attempt, exc: BaseException, force: str | None = None) -> None:
        """End ``attempt`` with ``exc``: decide, announce (hooks add logs), store, then follow up.

        Does nothing when another thread already ended the attempt (the watchdog's
        timeout and a late error of the task's own thread race for it).
        """
        if not attempt.claim_end():
            return
        policy = attempt.definition.retry if attempt.definition else RetryPolicy(max_retries=0)
        decision = decide(exc, attempt.delivery.attempt, policy, self._fallback, force)
        logs = self._announce(attempt, exc, decision)
        stored = self._store(attempt, exc, decision, logs)
        self.shared.held.forget(attempt.delivery)
        if stored and decision.action in ("retry", "ratelimited"):
            self.events.followed("task_retrying", attempt, exc, delay=decision.delay)
        elif stored and decision.action == "dead":
            self.events.followed("task_dead", attempt, exc, reason=decision.reason)

    def lease_lost(self, attempt: Attempt) -> None:
        """End an attempt whose lease is gone: nothing is stored (the lease's expiry
        redelivers the task, counted), but its hooks hear of the failure."""
        if attempt.announced and attempt.claim_end():
            self.events.ended(
                "task_failed", attempt, AsyncLeaseLost(), outcome="lease-lost", reason=attempt.stop_reason
            )

    def _announce(self, attempt: Attempt, exc: BaseException, decision: Decision) -> list[str]:
        """``task_failed`` or ``task_cancelled``; returns the lines their hooks added."""
        why = decision.reason or f"{type(exc).__name__}: {exc}"
        if decision.action == "cancelled":
            return self.events.ended("task_cancelled", attempt, exc, reason=why)
        extra: dict[str, Any] = {"outcome": decision.action, "reason": why}
        if decision.action in ("retry", "ratelimited"):
            extra["delay"] = decision.delay
        return self.events.ended("task_failed", attempt, exc, **extra)

    def _store(self, attempt: Attempt, exc: BaseException, decision: Decision, logs: list[str]) -> bool:
        """Write the failure and its consequence; False when the lease's token was stale or Redis failed."""
        delivery = attempt.delivery
        info = exc_info(exc)
        entry = _history_entry(info, delivery.attempt, decision)
        error = dumps(info, what="error")
        runtime = attempt.duration()
        backoff = Backoff()
        for _ in range(STORE_TRIES):
            try:
                stored, dropped = self.shared.link.fail(
                    delivery,
                    action=decision.action,
                    history_entry=entry,
                    error=error,
                    delay_ms=int(decision.delay * 1000),
                    reason=decision.reason,
                    logs=logs,
                    runtime_ms=int(runtime * 1000) if runtime is not None else -1,
                )
                self.shared.outage.recovered()
                break
            except REDIS_ERRORS as e:
                self.shared.outage.failed(e)
                backoff.pause(self.shared.stop)
        else:
            log.error(
                "could not record the failure of task %s; its lease will expire and it will run again",
                delivery.id,
            )
            return False
        if dropped:
            log.warning(
                "dead-letter queue %s over its bound: %d oldest entries dropped", delivery.queue, dropped
            )
        return stored


def _history_entry(info: dict[str, Any], attempt: int, decision: Decision) -> dict[str, Any]:
    """The task's history line for this failed attempt (``handle.history``)."""
    entry: dict[str, Any] = {
        **info,
        "event": "failed",
        "attempt": attempt,
        "at_ms": int(time.time() * 1000),
        "action": decision.action,
    }
    if decision.action in ("retry", "ratelimited"):
        entry["retry_in_s"] = round(decision.delay, 3)
    return entry


__all__ = ["Decision", "FailureRecorder", "decide", "exc_info"]
