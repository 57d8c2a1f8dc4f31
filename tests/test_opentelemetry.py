"""OpenTelemetry on the hooks: producer and consumer spans, one trace per task,
across attempts and across processes (SDK in-memory exporters)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "opentelemetry.sdk", reason="opentelemetry-sdk is not installed (pip install taskqueue[otel])"
)

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskqueue import Signature, TaskFailed, TaskQueue, TaskRegistry
from taskqueue.integrations.opentelemetry import Instrumentation, instrument

from .conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent


def _producer_emits_task_enqueued() -> bool:
    """Whether enqueue fires ``task_enqueued`` with headers (the producer side of the hooks)."""
    q = TaskQueue(f"memory://otel-probe-{os.getpid()}", registry=TaskRegistry())
    try:
        seen: list[object] = []
        q.on("task_enqueued", lambda event: seen.append((event.extra or {}).get("headers")))
        q.enqueue(Signature(q.task(lambda: None, name="probe.noop").name))
        return seen == [{}]
    finally:
        q.close()


#: Tests of the producer span and of the trace context it sends with the task.
needs_producer_hooks = pytest.mark.skipif(
    not _producer_emits_task_enqueued(),
    reason="TaskQueue does not emit task_enqueued with headers yet (the producer side of the hooks)",
)


class Tracing:
    def __init__(self, q: TaskQueue) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.instrumentation: Instrumentation = instrument(q, tracer_provider=self.provider)

    def spans(self, kind: SpanKind | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if kind is None or s.kind == kind]

    def wait(self, count: int, kind: SpanKind) -> list[ReadableSpan]:
        wait_until(lambda: len(self.spans(kind)) >= count)
        return self.spans(kind)


@pytest.fixture
def tracing(any_queue: TaskQueue) -> Iterator[Tracing]:
    t = Tracing(any_queue)
    yield t
    t.instrumentation.uninstrument()


@needs_producer_hooks
def test_an_enqueue_and_its_attempt_are_producer_and_consumer_of_one_trace(any_queue, tracing) -> None:
    q = any_queue

    @q.task(queue="high")
    def add(x: int, y: int) -> int:
        return x + y

    with tracing.provider.get_tracer("app").start_as_current_span("request") as request:
        h = add.delay(1, 2)
    with q.running(workers=1):
        assert h.result(timeout=10) == 3
        (consumer,) = tracing.wait(1, SpanKind.CONSUMER)
    (producer,) = tracing.spans(SpanKind.PRODUCER)
    assert producer.name == "high publish" and consumer.name == "high process"
    assert producer.parent.span_id == request.get_span_context().span_id  # the caller's span
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent.span_id == producer.context.span_id
    common = {
        "messaging.system": "taskqueue",
        "messaging.destination.name": "high",
        "messaging.message.id": h.id,
        "taskqueue.task.name": add.name,
    }
    assert dict(producer.attributes) == {
        **common, "messaging.operation.type": "publish", "messaging.operation.name": "publish",
        "taskqueue.attempt": producer.attributes["taskqueue.attempt"],
    }  # fmt: skip
    assert dict(consumer.attributes) == {
        **common, "messaging.operation.type": "process", "messaging.operation.name": "process",
        "taskqueue.attempt": 1, "taskqueue.outcome": "succeeded",
    }  # fmt: skip
    assert consumer.status.status_code is StatusCode.UNSET and not consumer.events


@needs_producer_hooks
def test_a_retry_is_a_new_consumer_span_in_the_same_trace(any_queue, tracing) -> None:
    q = any_queue
    runs: list[int] = []

    @q.task(max_retries=2, retry_wait=lambda state: 0)
    def flaky() -> str:
        runs.append(1)
        if len(runs) == 1:
            raise ConnectionError("first try fails")
        return "ok"

    h = flaky.delay()
    with q.running(workers=1):
        assert h.result(timeout=10) == "ok"
        first, second = tracing.wait(2, SpanKind.CONSUMER)
    (producer,) = tracing.spans(SpanKind.PRODUCER)
    for span in (first, second):
        assert span.context.trace_id == producer.context.trace_id
        assert span.parent.span_id == producer.context.span_id
    assert first.context.span_id != second.context.span_id
    assert (first.attributes["taskqueue.attempt"], second.attributes["taskqueue.attempt"]) == (1, 2)
    assert first.status.status_code is StatusCode.ERROR and first.attributes["taskqueue.outcome"] == "retry"
    (exception,) = first.events
    assert exception.name == "exception"
    assert exception.attributes["exception.type"] == "ConnectionError"
    assert exception.attributes["exception.message"] == "first try fails"
    assert second.status.status_code is StatusCode.UNSET and not second.events


def test_spans_the_task_creates_are_children_of_its_consumer_span(any_queue, tracing) -> None:
    q = any_queue
    tracer = tracing.provider.get_tracer("task-code")

    @q.task
    def work() -> None:
        with tracer.start_as_current_span("inner"):
            pass

    with q.running(workers=1):
        work.delay().result(timeout=10)
        (consumer,) = tracing.wait(1, SpanKind.CONSUMER)
    (inner,) = tracing.spans(SpanKind.INTERNAL)
    assert inner.name == "inner" and inner.parent.span_id == consumer.context.span_id
    assert inner.context.trace_id == consumer.context.trace_id


def test_a_timed_out_attempt_ends_its_span_and_the_thread_serves_the_next_with_its_own(
    any_queue, tracing
) -> None:
    """The watchdog ends a timed-out attempt's span from its thread; the context it left
    attached in the task's thread is undone before the next attempt there."""
    q = any_queue
    tracer = tracing.provider.get_tracer("task-code")

    @q.task(timeout=0.2, max_retries=0)
    def spin() -> None:
        while True:
            sum(range(100))

    @q.task
    def after() -> None:
        with tracer.start_as_current_span("inner"):
            pass

    left_current: list[trace.Span] = []  # in the worker thread, once an attempt's span ended
    q.on("task_succeeded", lambda event: left_current.append(trace.get_current_span()))
    with q.running(workers=1):
        with pytest.raises(TaskFailed, match="TaskTimeout"):
            spin.delay().result(timeout=10)
        after.delay().result(timeout=10)
        timed_out, ok = tracing.wait(2, SpanKind.CONSUMER)
    assert timed_out.status.status_code is StatusCode.ERROR
    assert timed_out.events[0].attributes["exception.type"] == "taskqueue.errors.TaskTimeout"
    (inner,) = tracing.spans(SpanKind.INTERNAL)
    assert inner.parent.span_id == ok.context.span_id
    assert left_current == [trace.INVALID_SPAN]  # not the timed-out attempt's span


def test_uninstrument_stops_tracing(any_queue, tracing) -> None:
    q = any_queue

    @q.task
    def noop() -> None:
        return None

    tracing.instrumentation.uninstrument()
    with q.running(workers=1):
        noop.delay().result(timeout=10)
    assert tracing.spans() == []


@needs_producer_hooks
def test_a_worker_in_another_process_parents_to_the_producer_span(redis_url, redis_client, tmp_path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from proc_worker import build

    producer_queue = build(redis_url)
    tracing = Tracing(producer_queue)
    spans_file = tmp_path / "spans.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "proc_worker.py"), redis_url, "1"],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TASKQUEUE_TEST_SPANS": str(spans_file)},
    )
    try:
        assert proc.stdout.readline().strip() == b"ready"
        h = producer_queue.enqueue(Signature("ledger.record", ("k1",)))
        assert h.result(timeout=10) == "k1"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        proc.stdout.close()
        producer_queue.close()
    assert proc.returncode == 0
    (producer,) = tracing.spans(SpanKind.PRODUCER)
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    (consumer,) = [s for s in spans if s["kind"] == "CONSUMER"]
    assert consumer["trace_id"] == producer.context.trace_id
    assert consumer["parent_id"] == producer.context.span_id
    assert consumer["attributes"]["messaging.message.id"] == h.id
