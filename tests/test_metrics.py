"""Metrics: counters and histograms written by the Lua scripts, read in bounded
round trips, aggregated over worker processes, and exported to Prometheus."""

from __future__ import annotations

import bisect
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import redis
import redis.connection

from taskqueue import TaskFailed, TaskQueue
from taskqueue.broker import MetricsReading
from taskqueue.broker.readings import busy_threads
from taskqueue.broker.scripts import HISTOGRAM_BOUNDS_MS
from taskqueue.config import Settings
from taskqueue.metrics import BOUNDS_SECONDS, LatencyStats, TaskQueueMetrics, from_reading
from taskqueue.metrics.histogram import COARSE_BOUNDS_SECONDS, N_BUCKETS

from .conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent


# -- the histogram math --------------------------------------------------------------------
def test_percentiles_interpolate_inside_the_bucket() -> None:
    second = HISTOGRAM_BOUNDS_MS.index(1000)  # the (800 ms, 1 s] bucket
    top = f"exec.{N_BUCKETS - 1}"
    fields = {"exec.0": 50, f"exec.{second}": 49, top: 1, "exec.sum": 50 * 1 + 49 * 900 + 7200_000}
    stats = LatencyStats.from_fields(fields, "exec")
    assert stats.count == 100
    assert stats.p50 == pytest.approx(0.001)  # the 50th is the last of the 0..1 ms bucket
    # the 95th lies in (0.8 s, 1 s]: 45 of its 49 observations in
    assert stats.p95 == pytest.approx(0.8 + 0.2 * 45 / 49)
    # above the last bound: reported as that bound
    assert stats.percentile(1.0) == BOUNDS_SECONDS[-1] == 3600
    assert stats.mean == pytest.approx(fields["exec.sum"] / 1000 / 100)
    cumulative = stats.cumulative()
    assert cumulative[-1] == (float("inf"), 100)
    assert [n for _, n in cumulative] == sorted(n for _, n in cumulative)
    coarse = dict(stats.cumulative(COARSE_BOUNDS_SECONDS))
    assert list(coarse)[:4] == [0.001, 0.002, 0.005, 0.01]
    assert (coarse[0.5], coarse[1.0], coarse[2000.0], coarse[float("inf")]) == (50, 99, 99, 100)
    with pytest.raises(ValueError, match="bounds must be taken from BOUNDS_SECONDS"):
        stats.cumulative([0.3])
    with pytest.raises(ValueError, match="q must be in"):
        stats.percentile(0)
    assert LatencyStats().p99 is None
    assert "p95=" in repr(stats)
    # buckets are 25% wide: a percentile is never off by more than that
    for ms in (7, 13, 95, 230, 4100, 70_000):
        one = LatencyStats.from_fields({f"exec.{bisect.bisect_left(HISTOGRAM_BOUNDS_MS, ms)}": 1}, "exec")
        assert ms / 1000 / 1.3 <= one.p50 <= ms / 1000 * 1.3


def test_lua_buckets_match_python(queue: TaskQueue, redis_client: redis.Redis) -> None:
    source = queue.broker.scripts.lib + "\nreturn bucket_of(tonumber(ARGV[1]))"
    assert "local HIST_BOUNDS_MS = {" + ", ".join(map(str, HISTOGRAM_BOUNDS_MS)) + "}" in source
    values = [0, 1, 2, 9, 10, 11, 12, 13, 999, 1000, 1001, 3_599_999, 3_600_000, 3_600_001, 10**9]
    values += [b + d for b in HISTOGRAM_BOUNDS_MS for d in (-1, 0, 1)]
    for ms in values:
        assert redis_client.eval(source, 0, ms) == bisect.bisect_left(HISTOGRAM_BOUNDS_MS, ms), ms
    assert len(BOUNDS_SECONDS) + 1 == N_BUCKETS


# -- counters and latencies from real runs ---------------------------------------------------
def test_counters_and_latencies_per_queue_and_task(queue: TaskQueue, redis_client: redis.Redis) -> None:
    @queue.task(name="m.ok")
    def ok(x: int) -> int:
        return x

    @queue.task(name="m.slow", queue="high")
    def slow() -> str:
        time.sleep(0.3)  # the quantity measured, not a synchronisation
        return "done"

    @queue.task(name="m.flaky", max_retries=1)
    def flaky() -> None:
        raise ValueError("always")

    @queue.task(name="m.final", dont_retry_on=KeyError)
    def final() -> None:
        raise KeyError("not retried")

    waiting = ok.delay(-1)
    # Pretend the first task was enqueued 7 s ago: its queue wait lands in (5 s, 10 s].
    redis_client.hset(queue.broker.keys.task(waiting.id), "enqueued_ms", int(time.time() * 1000) - 7000)
    with queue.running(workers=2):
        handles = [ok.delay(i) for i in range(30)]
        assert [h.result(timeout=10) for h in handles] == list(range(30))
        assert waiting.result(timeout=10) == -1
        assert slow.delay().result(timeout=10) == "done"
        for fn in (flaky, final):
            with pytest.raises(TaskFailed):
                fn.delay().result(timeout=10)
        m = queue.get_metrics()

    default, high = m.queue("default"), m.queue("high")
    assert default.processed_tasks == 31
    assert default.failed_tasks == 2  # flaky (dead) and final
    assert default.retried_tasks == 1
    assert default.dead_tasks == 1
    assert default.enqueued_tasks == 33
    assert high.processed_tasks == 1
    assert m.total_processed_tasks == 32
    assert m.throughput_last_minute == 34  # every task that finished, successes and failures
    assert default.pending_tasks == 0 and default.oldest_pending_age_seconds is None

    ok_m = m.task("m.ok")
    assert (ok_m.processed_tasks, ok_m.failed_tasks, ok_m.queue_name) == (31, 0, "default")
    assert ok_m.execution_time.count == 31 and ok_m.queue_wait.count == 31
    assert 6.3 <= ok_m.queue_wait.percentile(1.0) <= 8.0  # the 7 s wait, within its bucket
    flaky_m = m.task("m.flaky")
    assert (flaky_m.retried_tasks, flaky_m.failed_tasks, flaky_m.dead_tasks) == (1, 1, 1)
    assert flaky_m.execution_time.count == 2  # failed attempts are timed too
    assert m.task("m.final").failed_tasks == 1 and m.task("m.final").dead_tasks == 0
    slow_m = m.task("m.slow")
    assert slow_m.queue_name == "high"
    assert 0.25 <= slow_m.execution_time.p50 <= 0.4  # 300 ms, in the (250, 315] ms bucket
    assert slow_m.execution_time.sum_seconds == pytest.approx(0.3, abs=0.1)
    # the queue figures are the sum of its task names
    assert default.execution_time.count == sum(
        t.execution_time.count for t in m.task_metrics if t.queue_name == "default"
    )
    with pytest.raises(KeyError, match="no metrics for task"):
        m.task("never.ran")


def test_metrics_on_memory_backend(any_queue: TaskQueue) -> None:
    @any_queue.task(name="m.add")
    def add(a: int, b: int) -> int:
        return a + b

    with any_queue.running(workers=1):
        assert [add.delay(i, i).result(timeout=10) for i in range(5)] == [0, 2, 4, 6, 8]
        m = any_queue.get_metrics()
    assert m.task("m.add").processed_tasks == 5
    assert m.task("m.add").execution_time.count == 5
    assert m.queue("default").throughput_last_minute == 5
    assert m.active_workers == 1 and m.worker_processes == 1


def test_pending_and_oldest_age(queue: TaskQueue, redis_client: redis.Redis) -> None:
    @queue.task(name="m.later")
    def later() -> None:
        return None

    first = later.delay()
    for _ in range(4):
        later.delay()
    queue.pause("default")
    redis_client.hset(queue.broker.keys.task(first.id), "enqueued_ms", int(time.time() * 1000) - 60_000)
    later.apply_async(delay=60)
    m = queue.get_metrics()
    default = m.queue("default")
    assert default.pending_tasks == 5 and m.total_pending_tasks == 5
    assert default.paused
    assert 59 <= default.oldest_pending_age_seconds <= 70
    assert m.total_scheduled_tasks == 1
    assert m.active_workers == 0 and m.tasks_per_worker == 0.0
    with pytest.raises(KeyError, match="no queue named"):
        m.queue("nope")


def test_metrics_memory_is_bounded(queue: TaskQueue, redis_client: redis.Redis) -> None:
    @queue.task(name="m.n")
    def n(x: int) -> int:
        return x

    key = queue.broker.keys.metrics("default")
    with queue.running(workers=2):
        queue.enqueue_many([n.s(i) for i in range(300)])
        wait_until(lambda: queue.get_metrics().queue("default").processed_tasks == 300)
        size = redis_client.hlen(key)
        queue.enqueue_many([n.s(i) for i in range(300)])
        wait_until(lambda: queue.get_metrics().queue("default").processed_tasks == 600)
    # one task name: 4 counters + 2 histograms of (buckets + sum); plus the 60-slot ring
    bound = 4 + 2 * (N_BUCKETS + 1) + 2 * 60
    assert redis_client.hlen(key) <= bound
    assert redis_client.hlen(key) <= size + 2 * 60  # only ring slots may be added


def test_reading_takes_two_round_trips_whatever_the_sizes(
    queue: TaskQueue, round_trips: Counter[str]
) -> None:
    @queue.task(name="m.x")
    def x() -> None:
        return None

    def cost() -> int:
        before = round_trips[threading.current_thread().name]
        queue.get_metrics()
        return round_trips[threading.current_thread().name] - before

    queue.get_metrics()  # the first call also opens the connection
    small = cost()
    queue.enqueue_many([x.s() for _ in range(2000)])
    queue.start_workers(3)
    queue.pause("default")
    assert small == 1  # nothing pending, no worker: no second pipeline
    assert cost() == 2


def test_round_trips_per_task_unchanged(queue: TaskQueue, round_trips: Counter[str]) -> None:
    """The counters ride in the ack and fetch scripts: no round trip of their own. Quick
    tasks are leased and acknowledged in batches, so it is well under one per task."""

    @queue.task(name="m.rt")
    def rt(i: int) -> int:
        return i

    n = 300
    handles = queue.enqueue_many([rt.s(i) for i in range(n)])
    round_trips.clear()
    queue.start_workers(1)
    handles[-1].result(timeout=30)
    wait_until(lambda: queue.get_metrics().queue("default").processed_tasks == n)
    worker = sum(v for k, v in round_trips.items() if k.startswith("taskqueue-worker-"))
    assert 0 < worker <= n // 2  # batched ack+fetch pipelines, plus idle waits


def test_json_and_repr(queue: TaskQueue) -> None:
    @queue.task(name="m.j")
    def j() -> int:
        return 1

    with queue.running(workers=1):
        j.delay().result(timeout=10)
        m = queue.get_metrics()
    data = json.loads(json.dumps(m.to_dict()))
    assert data["queue_metrics"][1]["queue_name"] == "default"
    execution = data["task_metrics"][0]["execution_time"]
    assert sum(execution["buckets"].values()) == execution["count"] == 1
    assert data["workers"][0]["threads"] == 1
    text = repr(m)
    assert text.startswith("TaskQueueMetrics(workers=1 threads in 1 process(es)")
    assert "default" in repr(m.queue("default")) and "p95" in repr(m.queue("default"))
    assert "m.j" in repr(m.task("m.j"))
    assert isinstance(m, TaskQueueMetrics)


def test_worker_threads_visible(queue: TaskQueue) -> None:
    started, release = threading.Event(), threading.Event()

    @queue.task(name="m.block")
    def block() -> None:
        started.set()
        release.wait(10)

    queue.start_workers(2)
    h = block.delay()
    assert started.wait(10)
    try:
        worker = wait_until(
            lambda: next((w for w in queue.get_metrics().workers if w.busy_threads == 1), None), timeout=5
        )
        assert worker.pid == os.getpid() and worker.threads == 2
        assert worker.heartbeat_age_seconds is not None and worker.heartbeat_age_seconds < 1
        running = [t for t in worker.thread_details if t.task_id]
        assert [(t.task_name, t.task_id) for t in running] == [("m.block", h.id)]
        assert len(worker.thread_details) == 2
    finally:
        release.set()
    h.result(timeout=10)


CHILD = """
import sys
from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings

settings = Settings().replace(workers={"heartbeat_interval": 0.5, "idle_poll_seconds": 0.5})
q = TaskQueue(sys.argv[1], settings=settings, registry=TaskRegistry())

@q.task(name="child.echo")
def echo(x):
    return x

q.start_workers(2)
print("ready", flush=True)
sys.stdin.read()
"""


def test_metrics_span_processes_and_dead_workers_disappear(make_queue, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    interval = 0.5
    q = make_queue(workers={"heartbeat_interval": interval})

    @q.task(name="child.echo")
    def echo(x: int) -> int:
        return x

    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, redis_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        assert [echo.delay(i).result(timeout=10) for i in range(5)] == list(range(5))
        q.start_workers(1)
        m = wait_until(lambda: (m := q.get_metrics()).worker_processes == 2 and m, timeout=5)
        assert m.active_workers == 3
        assert {w.pid for w in m.workers} == {os.getpid(), child.pid}
        assert m.task("child.echo").processed_tasks == 5

        child.send_signal(signal.SIGKILL)
        child.wait(10)
        killed = time.monotonic()
        wait_until(lambda: child.pid not in {w.pid for w in q.get_metrics().workers}, timeout=5)
        gone_after = time.monotonic() - killed
        assert gone_after <= 2 * interval + 0.3, f"dead worker still listed after {gone_after:.2f} s"
        m = q.get_metrics()
        assert (m.worker_processes, m.active_workers) == (1, 1)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


# -- Prometheus ---------------------------------------------------------------------------------
def _scrape(url: str) -> dict[str, object]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _sample(families: dict, family: str, sample: str | None = None, **labels: str) -> float:
    """The value of one sample; ``sample`` defaults to the family name (gauges)."""
    sample = sample or family
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {sample}{labels} in {family}")


def test_prometheus_endpoint(queue: TaskQueue) -> None:
    from taskqueue.metrics.prometheus import start_http_server

    @queue.task(name="p.ok")
    def ok() -> int:
        return 1

    @queue.task(name="p.bad", max_retries=0)
    def bad() -> None:
        raise RuntimeError("no")

    server = start_http_server(queue, port=0, addr="127.0.0.1")
    with queue.running(workers=2):
        for _ in range(3):
            ok.delay().result(timeout=10)
        with pytest.raises(TaskFailed):
            bad.delay().result(timeout=10)
        ok.apply_async(queue="low", delay=60)
        families = _scrape(server.url)

    assert _sample(families, "taskqueue_up") == 1
    labels = {"queue": "default", "task": "p.ok"}
    assert families["taskqueue_tasks_processed"].type == "counter"
    assert _sample(families, "taskqueue_tasks_processed", "taskqueue_tasks_processed_total", **labels) == 3
    assert (
        _sample(families, "taskqueue_tasks_dead", "taskqueue_tasks_dead_total", queue="default", task="p.bad")
        == 1
    )
    hist = "taskqueue_task_execution_seconds"
    assert families[hist].type == "histogram"
    assert _sample(families, hist, hist + "_count", **labels) == 3
    assert _sample(families, hist, hist + "_bucket", le="+Inf", **labels) == 3
    assert _sample(families, hist, hist + "_bucket", le="50.0", **labels) == 3
    assert (
        len([s for s in families[hist].samples if s.name == hist + "_bucket" and s.labels["task"] == "p.ok"])
        == 21
    )
    assert 0 <= _sample(families, hist, hist + "_sum", **labels) < 1
    wait = "taskqueue_task_queue_wait_seconds"
    assert _sample(families, wait, wait + "_count", **labels) == 3
    assert _sample(families, "taskqueue_scheduled_tasks") == 1
    for idle in ("running", "prefetched", "unserved"):  # all finished; none waits for a worker
        assert _sample(families, f"taskqueue_{idle}_tasks") == 0
    assert _sample(families, "taskqueue_queue_pending_tasks", queue="high") == 0
    assert _sample(families, "taskqueue_worker_threads", pid=str(os.getpid())) == 2
    enqueued = "taskqueue_tasks_enqueued"
    assert _sample(families, enqueued, enqueued + "_total", queue="default") == 4
    queue.close()  # stops the server with the queue
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=2)


def test_prometheus_reports_redis_down(make_queue, unused_port: int) -> None:  # type: ignore[no-untyped-def]
    from taskqueue.metrics.prometheus import generate_latest

    q = make_queue(
        f"redis://127.0.0.1:{unused_port}/0",
        redis={"retry_attempts": 1, "connection_timeout": 0.5, "retry_max_seconds": 0.5},
    )
    from prometheus_client.parser import text_string_to_metric_families

    body, content_type = generate_latest(q)
    assert content_type.startswith("text/plain")
    families = list(text_string_to_metric_families(body.decode()))
    assert [(f.name, f.samples[0].value) for f in families] == [("taskqueue_up", 0.0)]


def test_prometheus_argument_errors(queue: TaskQueue) -> None:
    from taskqueue.metrics.prometheus import TaskQueueCollector, start_http_server

    with pytest.raises(TypeError, match="needs a TaskQueue"):
        start_http_server("redis://x", 9100)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port must be an int"):
        start_http_server(queue, port=70000)
    with pytest.raises(TypeError, match="needs a TaskQueue"):
        TaskQueueCollector(None)  # type: ignore[arg-type]
    server = start_http_server(queue, port=0, addr="127.0.0.1")
    with pytest.raises(OSError, match="pick another port"):
        start_http_server(queue, port=server.port, addr="127.0.0.1")
    server.stop()


# -- running, prefetched and unserved, from the published thread states --------------------
def _reading(workers: dict[str, dict[str, object]], leased: int, unserved: int = 0) -> MetricsReading:
    return MetricsReading(
        now_ms=1_000_000_000_000,
        queues=["default"],
        pending={"default": 4},
        dead_letters={"default": 0},
        stats={},
        metrics={},
        oldest={},
        leased=leased,
        scheduled=0,
        paused=set(),
        workers=workers,  # type: ignore[arg-type]
        autoscaler={},
        unserved=unserved,
    )


def test_running_counts_busy_threads_and_the_rest_of_the_leases_are_prefetched() -> None:
    now_s = 1_000_000_000.0
    busy = {"thread": "w-1", "task": "m.slow", "task_id": "t1", "running_s": 0.06, "since": now_s - 12.5}
    workers = {
        "a": {"threads": 2, "busy": 1, "slots": [busy, {"thread": "w-2", "task": None}]},
        # a worker that publishes no slots: its busy count
        "b": {"threads": 3, "busy": 2},
    }
    m = from_reading(_reading(workers, leased=7, unserved=2), Settings())
    assert (m.total_running_tasks, m.total_prefetched_tasks, m.busy_workers) == (3, 4, 3)
    assert m.total_unserved_tasks == 2 and m.total_pending_tasks == 4
    (thread, idle) = m.workers[0].thread_details
    # counted from the published start to the reading's instant, not the 0.06 s it published
    assert thread.running_seconds == pytest.approx(12.5) and thread.started_at == now_s - 12.5
    assert (idle.task_id, idle.running_seconds, idle.started_at) == (None, None, None)
    data = m.to_dict()
    assert (data["total_prefetched_tasks"], data["total_unserved_tasks"]) == (4, 2)
    assert data["workers"][0]["thread_details"][0]["started_at"] == now_s - 12.5
    assert "running=3, prefetched=4, unserved=2" in repr(m)
    # the two figures are read a moment apart: prefetched is never negative
    assert from_reading(_reading(workers, leased=1), Settings()).total_prefetched_tasks == 0
    assert busy_threads({"busy": True}) == 0 and busy_threads({"slots": "?", "busy": 2}) == 2
