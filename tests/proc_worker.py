"""A worker process for crash tests: ``python tests/proc_worker.py URL THREADS [QUEUE...]``.

Its tasks record what they do in Redis (a ledger), so the test process can
see which ran, how often, and kill this process in the middle of one.

With ``TASKQUEUE_TEST_SPANS=FILE`` it traces with OpenTelemetry into an
in-memory exporter of its own and writes the finished spans to FILE, one JSON
object a line, when it stops (SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings

FAST = {
    "workers": {"heartbeat_interval": 0.2, "lease_heartbeats": 3, "idle_poll_seconds": 0.5},
    "tasks": {"retry_backoff_initial": 0.05, "retry_backoff_max": 0.2, "retry_jitter": 0.05},
}


def build(url: str) -> TaskQueue:
    q = TaskQueue(url, settings=Settings().replace(**FAST), registry=TaskRegistry())
    ledger = redis.Redis.from_url(url)

    @q.task(name="ledger.record", max_retries=5)
    def record(key: str, hold: bool = False) -> str:
        """Note the run; with hold, block until the test pushes ledger:go:<key>."""
        ledger.sadd("ledger:started", key)
        ledger.incr(f"ledger:runs:{key}")
        if hold:
            ledger.blpop([f"ledger:go:{key}"], timeout=60)
        ledger.sadd("ledger:done", key)
        return key

    return q


def traced(q: TaskQueue, path: str):  # -> a function that writes the spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from taskqueue.integrations.opentelemetry import instrument

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(q, tracer_provider=provider)

    def write() -> None:
        with open(path, "w") as out:
            for span in exporter.get_finished_spans():
                parent = span.parent.span_id if span.parent is not None else None
                line = {"name": span.name, "kind": span.kind.name, "trace_id": span.context.trace_id,
                        "span_id": span.context.span_id, "parent_id": parent,
                        "attributes": dict(span.attributes or {})}  # fmt: skip
                out.write(json.dumps(line) + "\n")

    return write


if __name__ == "__main__":
    url, threads = sys.argv[1], int(sys.argv[2])
    q = build(url)
    spans = os.environ.get("TASKQUEUE_TEST_SPANS")
    write_spans = traced(q, spans) if spans else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    q.start_workers(threads)
    print("ready", flush=True)
    stop.wait()
    q.stop_workers(timeout=10)
    if write_spans is not None:
        write_spans()
    q.close()
