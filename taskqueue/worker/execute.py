"""Running one delivery: check it, call the task, and settle what came of it.

In order: the lease must still be good (a prefetched task whose lease lapsed
while it waited may be running elsewhere by now); the payload must be
within bounds, signed when signing is on, decodable, and name a registered
task whose signature its arguments fit (otherwise the delivery is rejected
to the dead letters with the reason); then the task runs with its context,
its deadline watched by the watchdog; then its result is encoded, to be
acknowledged in the slot's next round trip, or its error recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from taskqueue import context
from taskqueue.broker import Delivery
from taskqueue.broker.ports import Ack
from taskqueue.errors import PayloadTooLarge, Reject, SerializationError, TaskCancelled, TaskNotFound
from taskqueue.registry import TaskDefinition, TaskRegistry
from taskqueue.serialization import Envelope, Signer, decode, dumps
from taskqueue.worker.events import AttemptEvents
from taskqueue.worker.failure import FailureRecorder
from taskqueue.worker.interrupt import AsyncLeaseLost
from taskqueue.worker.state import Attempt, Shared, Slot
from taskqueue.workflow.inputs import with_inputs

log = logging.getLogger("taskqueue.worker")

#: What a slot acknowledges for a succeeded attempt: the ack, and the log lines to store with it.
Outcome = tuple[Ack, list[str]]


class Executor:
    """Runs deliveries for the slots of one pool."""

    def __init__(
        self,
        shared: Shared,
        registry: TaskRegistry,
        signer: Signer,
        events: AttemptEvents,
        recorder: FailureRecorder,
    ) -> None:
        self.shared = shared
        self.registry = registry
        self.signer = signer
        self.events = events
        self.recorder = recorder

    def run(self, slot: Slot, delivery: Delivery) -> Outcome | None:
        """Run a delivery; return what to ack, or None when its outcome is already stored."""
        attempt = self._claim(slot, delivery)
        if attempt is None:
            return None
        try:
            call = self._prepare(attempt)
            value = self._call(slot, attempt, call)
            return self._settle(attempt, value)
        except Exception as exc:  # noqa: BLE001 - any error of user code is an outcome
            self._failed(attempt, exc)
            return None
        finally:
            with slot.lock:
                slot.current = None
            attempt.deadline = None

    # -- the steps -------------------------------------------------------------------
    def _claim(self, slot: Slot, delivery: Delivery) -> Attempt | None:
        """The held attempt of this delivery, unless its lease lapsed while it waited."""
        attempt = self.shared.held.get(delivery.id)
        now = time.monotonic()
        if (
            attempt is None
            or attempt.lease_lost_at is not None
            or now >= attempt.lease_from + self.shared.lease_limit
        ):
            # Fetched ahead, then its lease lapsed or was lost while it waited: it
            # may be running elsewhere by now, so it must not start here.
            self.shared.held.forget(delivery)
            log.warning("task %s: not started, its lease was lost while it waited", delivery.id)
            return None
        attempt.slot = slot
        if attempt.cancel_requested:  # cancel() arrived while it waited in the buffer: never start it
            cancelled = TaskCancelled(f"task {delivery.id} was cancelled before it started")
            self.recorder.record(attempt, cancelled, force="cancelled")
            return None
        attempt.started = now
        if not self.shared.activity.is_set():  # the state publisher marks it RUNNING if it lasts
            self.shared.activity.set()
        return attempt

    def _prepare(self, attempt: Attempt) -> Callable[[], Any]:
        """Check and decode the payload, then set the attempt up to run; raises Reject."""
        envelope = self._decode(attempt.delivery)
        if "inputs" in envelope.options:  # a workflow member: its dependencies' results come first
            envelope = with_inputs(envelope, self.shared.link, attempt.delivery)
        attempt.task_name = envelope.name
        try:
            definition = self.registry.get(envelope.name)
        except TaskNotFound as exc:
            raise Reject(f"unknown-task: {exc}") from None
        attempt.definition = definition
        try:
            call = definition.prepare(envelope)
        except TypeError as exc:
            raise Reject(f"bad-arguments: {exc}") from None
        self._begin(attempt, envelope, definition)
        return call

    def _decode(self, delivery: Delivery) -> Envelope:
        limit = self.shared.settings.tasks.max_payload_bytes
        if len(delivery.payload) > limit:  # not even decoded: written around the producer's check
            raise Reject(
                f"bad-payload: {len(delivery.payload)} bytes, over tasks.max_payload_bytes ({limit})"
            )
        if not self.signer.verify(delivery.payload, delivery.signature):
            raise Reject("bad-signature: the task is unsigned or its signature does not match")
        try:
            return decode(delivery.payload)
        except SerializationError as exc:
            raise Reject(f"bad-payload: {exc}") from None

    def _begin(self, attempt: Attempt, envelope: Envelope, definition: TaskDefinition) -> None:
        """Per-call options, the task's context, ``task_started``, and the deadline."""
        delivery = attempt.delivery
        timeout = float(
            envelope.options.get("timeout")
            or definition.timeout
            or self.shared.settings.tasks.timeout_seconds
        )
        max_retries = envelope.options.get("max_retries")
        if isinstance(max_retries, int) and max_retries >= 0:
            attempt.definition = replace(definition, retry=replace(definition.retry, max_retries=max_retries))
        attempt.ctx = context.TaskContext(
            delivery.id, definition.name, delivery.queue, delivery.attempt, timeout
        )
        reporter = self.shared.progress
        if reporter is not None:
            attempt.ctx._sink = partial(reporter.report, delivery.id, delivery.queue, delivery.token)
        attempt.announced = True
        self.events.started(attempt, envelope.options)
        attempt.deadline = attempt.started + timeout
        # The watchdog may sleep past this attempt's deadline, or past the moment its lease
        # must be given up if the heartbeat cannot renew it: wake it for the earlier one.
        self.shared.watch.wake_before(min(attempt.deadline, attempt.lease_from + self.shared.lease_limit))

    def _call(self, slot: Slot, attempt: Attempt, call: Callable[[], Any]) -> Any:
        """The task's own code, marked so the watchdog knows it may interrupt this thread."""
        context._set(attempt.ctx)
        try:
            with slot.lock:
                slot.current = attempt
                slot.in_user_code = True
            try:
                if attempt.lease_lost_at is not None:  # lost just before the call
                    raise AsyncLeaseLost()
                return call()
            finally:
                with slot.lock:
                    slot.in_user_code = False
        finally:
            context._set(None)
            if self.shared.progress is not None and attempt.ctx is not None and attempt.ctx._sink is not None:
                self.shared.progress.flush(attempt.delivery.id)  # its last value, before the outcome

    def _settle(self, attempt: Attempt, value: Any) -> Outcome | None:
        """What the task's return leads to: an ack to send, or an outcome recorded now."""
        if attempt.timed_out_at is not None:
            return None  # the watchdog stored the timeout; this late value is dropped
        ctx = attempt.ctx
        if attempt.lease_lost_at is None and ctx is not None and ctx.cancel_reason == "cancelled":
            # Cancelled while it ran, then returned normally: the caller asked for it
            # not to finish, so the outcome is CANCELLED and the value is discarded.
            self.recorder.record(
                attempt,
                TaskCancelled(
                    f"task {attempt.delivery.id} was cancelled while running; its return value was discarded"
                ),
                force="cancelled",
            )
            return None
        runtime_ms = int((time.monotonic() - attempt.started) * 1000)
        try:
            data = self._encode(attempt, value)
        except SerializationError as exc:
            self.recorder.record(attempt, exc, force="failed")
            return None
        ack = (attempt.delivery, data, runtime_ms)
        if not attempt.claim_end():
            # Its lease was lost while it ran (the hooks heard of that failure then). The
            # answer is still sent: the lease's token decides, and the server refuses it
            # when the task was delivered again ("outcome of attempt N discarded").
            return ack, []
        # An empty list when the task printed nothing: the ack then sends nothing more.
        return ack, self.events.ended("task_succeeded", attempt)

    def _encode(self, attempt: Attempt, value: Any) -> bytes:
        limit = self.shared.settings.tasks.max_result_bytes
        data = dumps(value, what=f"result of task {attempt.task_name!r}")
        if len(data) > limit:
            raise PayloadTooLarge(len(data), limit, "result", "tasks.max_result_bytes")
        return data

    def _failed(self, attempt: Attempt, exc: Exception) -> None:
        """Record the error of an attempt, unless the watchdog already ended it."""
        if attempt.stopped_at is not None:
            self._stopped(attempt)
        elif isinstance(exc, Reject):
            self.recorder.record(attempt, exc, force="dead")
        elif isinstance(exc, TaskCancelled):
            cancelled = attempt.ctx is not None and attempt.ctx.cancel_reason == "cancelled"
            self.recorder.record(attempt, exc, force="cancelled" if cancelled else None)
        else:  # a TaskTimeout raised by the task itself follows the policy like any error
            self.recorder.record(attempt, exc)

    def _stopped(self, attempt: Attempt) -> None:
        """The thread of an attempt that was timed out or lost its lease came back."""
        if attempt.lease_lost_at is not None and attempt.timed_out_at is None:
            # Nothing to store: the lease is gone, and the server's lease expiry
            # redelivers the task (counted, with a lease-expired history entry).
            self.shared.held.forget(attempt.delivery)
            self.recorder.lease_lost(attempt)  # unless the heartbeat told the hooks already


__all__ = ["Executor", "Outcome"]
