"""OpenTelemetry tracing, built on the hooks alone (DESIGN 9).

``instrument(q)`` (``pip install taskqueue[otel]``) gives every enqueue a
PRODUCER span and every attempt a CONSUMER span that is its child, in the
same trace even when the worker runs in another process or on another
machine::

    from taskqueue.integrations.opentelemetry import instrument

    instrumentation = instrument(q)          # the global tracer provider, or tracer_provider=...
    ...
    instrumentation.uninstrument()

How it travels: on ``task_enqueued`` (in the caller's thread, just before the
write) a span named ``"<queue> publish"`` starts and the W3C ``traceparent``
(and ``tracestate``) are injected with OpenTelemetry's propagator into the
task's headers, a dict of strings stored in the envelope. The write follows
at once, within the same call, so the producer span ends right there: its
duration is that of preparing the send, not of the Redis round trip. On
``task_started`` the worker's hook extracts that context and starts
``"<queue> process"`` as its child, current in the task's thread while the
task's code runs, so spans the task creates are its children. The ending
event of the attempt ends it: ``task_succeeded``, ``task_failed`` (status
ERROR, the exception recorded; a timeout or a lost lease ends it from the
watchdog's thread) or ``task_cancelled``. A task that goes dead has its
last ``task_failed`` (attribute ``taskqueue.outcome`` = "dead"). A retry is
a new attempt, hence a new consumer span with the same parent: one trace
holds every attempt of a task.

Attributes follow OpenTelemetry's messaging conventions:
``messaging.system`` = "taskqueue", ``messaging.destination.name`` (the
queue), ``messaging.message.id`` (the task id), ``messaging.operation.type``
and ``messaging.operation.name`` ("publish" or "process"), plus
``taskqueue.task.name``, ``taskqueue.attempt`` and, on a consumer span,
``taskqueue.outcome``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from taskqueue.hooks import TaskEvent

if TYPE_CHECKING:
    from taskqueue.queue import TaskQueue

SYSTEM = "taskqueue"


def _attributes(event: TaskEvent, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": event.queue,
        "messaging.message.id": event.task_id,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "taskqueue.task.name": event.task_name,
        "taskqueue.attempt": event.attempt,
    }


class Instrumentation:
    """The hooks ``instrument`` registered on one queue; ``uninstrument()`` removes them."""

    def __init__(self, q: TaskQueue, tracer_provider: trace.TracerProvider | None = None) -> None:
        from taskqueue import __version__

        self._queue = q
        self._tracer = trace.get_tracer("taskqueue", __version__, tracer_provider=tracer_provider)
        #: Consumer spans of running attempts, by (task id, attempt): the ending event
        #: may come from another thread than the one that started the span.
        self._spans: dict[tuple[str, int], trace.Span] = {}
        self._lock = threading.Lock()
        #: Per worker thread: the attempt whose span is current there, and the token to undo it.
        self._local = threading.local()
        self._hooks: list[tuple[str, Callable[[TaskEvent], None]]] = [
            ("task_enqueued", self._enqueued),
            ("task_started", self._started),
            ("task_succeeded", self._ended),
            ("task_failed", self._ended),
            ("task_cancelled", self._ended),
        ]
        for event, fn in self._hooks:
            q.on(event, fn)

    def uninstrument(self) -> None:
        """Stop tracing this queue (spans of attempts still running end with them)."""
        for event, fn in self._hooks:
            self._queue.off(event, fn)
        self._hooks = []

    def __repr__(self) -> str:
        return f"<Instrumentation of {self._queue!r} {'on' if self._hooks else 'off'}>"

    # -- producer ------------------------------------------------------------------
    def _enqueued(self, event: TaskEvent) -> None:
        span = self._tracer.start_span(
            f"{event.queue} publish", kind=SpanKind.PRODUCER, attributes=_attributes(event, "publish")
        )
        try:
            headers = (event.extra or {}).get("headers")
            if isinstance(headers, dict):
                propagate.inject(headers, context=trace.set_span_in_context(span))
        finally:
            span.end()  # the write follows at once, in the same call

    # -- consumer ------------------------------------------------------------------
    def _started(self, event: TaskEvent) -> None:
        self._detach_stale()
        headers = (event.extra or {}).get("headers") or {}
        parent = propagate.extract(headers)
        span = self._tracer.start_span(
            f"{event.queue} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=_attributes(event, "process"),
        )
        key = (event.task_id, event.attempt)
        with self._lock:
            self._spans[key] = span
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        self._local.active = (key, token)

    def _ended(self, event: TaskEvent) -> None:
        key = (event.task_id, event.attempt)
        with self._lock:
            span = self._spans.pop(key, None)
        active = getattr(self._local, "active", None)
        if active is not None and active[0] == key:
            self._local.active = None
            otel_context.detach(active[1])
        if span is None:
            return  # a delivery rejected before it started, or an attempt begun before instrument()
        extra = event.extra or {}
        outcome = "succeeded" if event.event == "task_succeeded" else extra.get("outcome", "cancelled")
        span.set_attribute("taskqueue.outcome", outcome)
        if event.event == "task_failed":
            if event.error is not None:
                span.record_exception(event.error)
            span.set_status(Status(StatusCode.ERROR, str(extra.get("reason") or event.error)))
        span.end()

    def _detach_stale(self) -> None:
        """An attempt of this thread ended elsewhere (the watchdog timed it out): its
        context is still attached here, so undo it before the next attempt's."""
        active = getattr(self._local, "active", None)
        if active is not None:
            self._local.active = None
            otel_context.detach(active[1])


def instrument(q: TaskQueue, tracer_provider: trace.TracerProvider | None = None) -> Instrumentation:
    """Trace ``q``'s enqueues and attempts (see the module docstring); call once per queue."""
    return Instrumentation(q, tracer_provider)


__all__ = ["Instrumentation", "instrument"]
