"""Prometheus export: the figures of ``q.get_metrics()`` as Prometheus metrics.

A custom collector reads Redis at scrape time (two pipelined round trips), so any
process can serve the metrics of the whole namespace - a worker, a web app, or a
small exporter process - and several processes serving them report the same
numbers. Needs the ``prometheus`` extra (``pip install taskqueue[prometheus]``).

    from taskqueue.metrics.prometheus import start_http_server
    server = start_http_server(q, port=9100)      # http://host:9100/metrics

Or register ``TaskQueueCollector(q)`` in a ``CollectorRegistry`` of your own.
Counters end in ``_total``, durations are histograms in seconds, labels are
``queue`` and ``task`` (the task name).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

try:
    import prometheus_client
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.registry import Collector, CollectorRegistry
    from prometheus_client.utils import floatToGoString
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "taskqueue.metrics.prometheus needs prometheus_client: pip install 'taskqueue[prometheus]'"
    ) from exc

import redis

from taskqueue.errors import BrokerError
from taskqueue.metrics.histogram import COARSE_BOUNDS_SECONDS, LatencyStats
from taskqueue.metrics.reading import get_metrics

if TYPE_CHECKING:
    from taskqueue.queue import TaskQueue

log = logging.getLogger("taskqueue.metrics")

__all__ = ["MetricsServer", "TaskQueueCollector", "generate_latest", "start_http_server"]


def _buckets(stats: LatencyStats) -> list[tuple[str, float]]:
    return [(floatToGoString(bound), float(n)) for bound, n in stats.cumulative(COARSE_BOUNDS_SECONDS)]


class TaskQueueCollector(Collector):
    """Reads the queue's metrics from Redis each time Prometheus scrapes.

    When Redis cannot be read, the scrape still answers, with ``taskqueue_up 0``
    only, so an alert can fire on it instead of on a failed scrape.
    """

    def __init__(self, queue: TaskQueue) -> None:
        from taskqueue.queue import TaskQueue

        if not isinstance(queue, TaskQueue):
            raise TypeError(f"TaskQueueCollector needs a TaskQueue, got {type(queue).__name__}")
        # What a scrape reads: the inspection port and the queues of the settings.
        self.inspection = queue.broker
        self.settings = queue.settings

    def describe(self) -> list[Any]:
        # Nothing to describe up front: registering must not touch Redis.
        return []

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("taskqueue_up", "1 when the metrics could be read from Redis, else 0")
        try:
            m = get_metrics(self.inspection, self.settings)
        except (BrokerError, redis.exceptions.RedisError) as exc:
            log.warning("Prometheus scrape: cannot read metrics from Redis: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up

        def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
            return CounterMetricFamily(f"taskqueue_{name}", doc, labels=labels)

        def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"taskqueue_{name}", doc, labels=labels or [])

        per_task = {
            "processed": counter("tasks_processed", "Tasks that succeeded", ["queue", "task"]),
            "failed": counter(
                "tasks_failed", "Tasks that failed for good (dead-lettered ones included)", ["queue", "task"]
            ),
            "retried": counter(
                "tasks_retried", "Failed attempts that were scheduled again", ["queue", "task"]
            ),
            "dead": counter("tasks_dead", "Tasks that went to the dead-letter queue", ["queue", "task"]),
        }
        execution = HistogramMetricFamily(
            "taskqueue_task_execution_seconds",
            "Execution time of every attempt (successful or not)",
            labels=["queue", "task"],
        )
        wait = HistogramMetricFamily(
            "taskqueue_task_queue_wait_seconds",
            "Time from enqueue (or the due time of a delay or retry) to the start of an attempt",
            labels=["queue", "task"],
        )
        for t in m.task_metrics:
            labels = [t.queue_name, t.task_name]
            per_task["processed"].add_metric(labels, t.processed_tasks)
            per_task["failed"].add_metric(labels, t.failed_tasks)
            per_task["retried"].add_metric(labels, t.retried_tasks)
            per_task["dead"].add_metric(labels, t.dead_tasks)
            execution.add_metric(labels, _buckets(t.execution_time), t.execution_time.sum_seconds)
            wait.add_metric(labels, _buckets(t.queue_wait), t.queue_wait.sum_seconds)
        yield from per_task.values()
        yield execution
        yield wait

        enqueued = counter("tasks_enqueued", "Tasks enqueued", ["queue"])
        lease_expired = counter(
            "tasks_lease_expired", "Attempts whose worker died, so the task was delivered again", ["queue"]
        )
        pending = gauge("queue_pending_tasks", "Tasks waiting in the queue", ["queue"])
        dead_letters = gauge("queue_dead_letter_tasks", "Tasks in the dead-letter queue", ["queue"])
        oldest = gauge(
            "queue_oldest_pending_age_seconds", "Age of the oldest pending task (0 when empty)", ["queue"]
        )
        paused = gauge("queue_paused", "1 when the queue is paused", ["queue"])
        throughput = gauge(
            "queue_throughput_last_minute", "Tasks that finished in the last 60 seconds", ["queue"]
        )
        for q in m.queue_metrics:
            labels = [q.queue_name]
            enqueued.add_metric(labels, q.enqueued_tasks)
            lease_expired.add_metric(labels, q.lease_expired)
            pending.add_metric(labels, q.pending_tasks)
            dead_letters.add_metric(labels, q.dead_letter_tasks)
            oldest.add_metric(labels, q.oldest_pending_age_seconds or 0.0)
            paused.add_metric(labels, 1.0 if q.paused else 0.0)
            throughput.add_metric(labels, q.throughput_last_minute)
        yield from (enqueued, lease_expired, pending, dead_letters, oldest, paused, throughput)

        running = gauge("running_tasks", "Tasks whose code runs in a worker thread")
        running.add_metric([], m.total_running_tasks)
        prefetched = gauge("prefetched_tasks", "Tasks leased into a worker's prefetch buffer, not started")
        prefetched.add_metric([], m.total_prefetched_tasks)
        unserved = gauge("unserved_tasks", "Pending tasks that no live worker serves (by task name)")
        unserved.add_metric([], m.total_unserved_tasks)
        scheduled = gauge("scheduled_tasks", "Tasks waiting for their delay or retry time")
        scheduled.add_metric([], m.total_scheduled_tasks)
        waiting = gauge("waiting_tasks", "Tasks waiting for their dependencies (workflows)")
        waiting.add_metric([], m.total_waiting_tasks)
        processes = gauge("worker_processes", "Live worker processes")
        processes.add_metric([], m.worker_processes)
        yield from (running, prefetched, unserved, scheduled, waiting, processes)

        threads = gauge(
            "worker_threads", "Worker threads of a live worker process", ["worker", "host", "pid"]
        )
        busy = gauge("worker_busy_threads", "Worker threads running a task", ["worker", "host", "pid"])
        for w in m.workers:
            labels = [w.worker_id, w.host, str(w.pid or "")]
            threads.add_metric(labels, w.threads)
            busy.add_metric(labels, w.busy_threads)
        yield threads
        yield busy

        decisions = counter("autoscaler_decisions", "Autoscaler changes of the thread count", ["direction"])
        decisions.add_metric(["up"], m.autoscaler.scale_ups)
        decisions.add_metric(["down"], m.autoscaler.scale_downs)
        yield decisions


def registry_for(queue: TaskQueue) -> CollectorRegistry:
    """A fresh registry holding only this queue's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskQueueCollector(queue))
    return registry


def generate_latest(queue: TaskQueue) -> tuple[bytes, str]:
    """The text exposition and its content type, for serving from your own web app."""
    return prometheus_client.generate_latest(registry_for(queue)), prometheus_client.CONTENT_TYPE_LATEST


class MetricsServer:
    """The HTTP server ``start_http_server`` started; ``stop()`` (or ``q.close()``) ends it."""

    def __init__(self, queue: TaskQueue, port: int, addr: str) -> None:
        self.services = queue.services
        httpd, self._thread = prometheus_client.start_http_server(port, addr, registry_for(queue))
        self._httpd: Any = httpd  # None once stopped
        self.addr = addr
        self.port = int(httpd.server_port)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.addr in ("", "0.0.0.0") else self.addr
        return f"http://{host}:{self.port}/metrics"

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url}>"

    def stop(self) -> None:
        with self._lock:
            if self._httpd is None:
                return
            httpd, self._httpd = self._httpd, None
        httpd.shutdown()
        httpd.server_close()
        self._thread.join(5)
        self.services.remove(self)


def start_http_server(queue: TaskQueue, port: int = 9100, addr: str = "0.0.0.0") -> MetricsServer:
    """Serve ``/metrics`` for this queue's namespace on ``addr:port`` (port 0: any free port).

    The server runs on a daemon thread and stops with ``q.close()``. ``addr``
    defaults to every interface, as prometheus_client does; pass ``"127.0.0.1"``
    to keep it local.
    """
    from taskqueue.queue import TaskQueue

    if not isinstance(queue, TaskQueue):
        raise TypeError(
            f"start_http_server needs a TaskQueue as its first argument, got {type(queue).__name__}"
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0..65535 (0: any free port), got {port!r}")
    if not isinstance(addr, str):
        raise TypeError(f"addr must be a string such as '0.0.0.0' or '127.0.0.1', got {addr!r}")
    try:
        server = MetricsServer(queue, port, addr)
    except OSError as exc:
        raise OSError(
            f"cannot serve Prometheus metrics on {addr}:{port}: {exc.strerror or exc}; "
            "pick another port (or 0 for any free port)"
        ) from exc
    queue.services.add(server, key=str(server.port))
    log.info("serving Prometheus metrics at %s", server.url)
    return server
