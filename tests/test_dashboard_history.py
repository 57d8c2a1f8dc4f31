"""The per-minute history: written by the outcome scripts, bounded by its retention,
read in a fixed number of round trips; the CLI's dashboard server and the Flask mount."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import redis
from flask import Flask

from taskqueue import TaskFailed, TaskQueue
from taskqueue.dashboard.history import queue_history
from taskqueue.integrations.flask import TaskQueueExtension

from .conftest import make_settings
from .dashboard_client import Client, Served


def _run_some(q: TaskQueue) -> None:
    @q.task(name="hist.ok")
    def ok(n: int) -> int:
        return n

    @q.task(name="hist.bad", max_retries=1)
    def bad() -> None:
        raise ValueError("no")

    handles = [ok.delay(i) for i in range(30)]
    failing = bad.delay()
    with q.running(workers=2):
        for h in handles:
            h.result(timeout=20)
        with pytest.raises(TaskFailed):
            failing.result(timeout=30)


def test_outcomes_are_counted_per_minute_and_task_name(make_queue, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    q = make_queue(tasks={"retry_backoff_initial": 0.01, "retry_jitter": 0})
    _run_some(q)
    current, raw = q.broker.history(["default"], 3)
    assert current * 60_000 <= time.time() * 1000 < (current + 1) * 60_000 + 5_000
    h = queue_history("default", raw["default"])
    assert h.by_task["hist.ok"].ok == 30 and h.by_task["hist.ok"].failed == 0
    assert h.by_task["hist.bad"].failed == 2  # both attempts, the retried one and the dead one
    assert h.by_task["hist.ok"].latency.count == 30 and h.by_task["hist.ok"].p95_ms is not None
    assert sum(f.ok for f in h.minutes) == 30
    keys = [k for k in redis_client.scan_iter(q.broker.keys.minutes("default") + "*")]
    assert keys
    retention_ms = q.settings.metrics.history_retention * 1000
    for k in keys:
        ttl = redis_client.pttl(k)
        assert retention_ms < ttl <= retention_ms + 60_000


def test_long_ranges_are_summed_into_points_in_redis(make_queue, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    q = make_queue()
    now = q.broker.history(["default"], 1)[0]
    for back, ok in ((0, 1), (1, 2), (2, 4), (3, 8), (5, 16)):  # minute now-4 has nothing
        redis_client.hset(q.broker.keys.minute("default", now - back), mapping={"ok|a": ok, "fail|a": back})
    _, per_minute = q.broker.history(["default"], 6)
    assert [m.get("ok|a", 0) for m in per_minute["default"]] == [16, 0, 8, 4, 2, 1]
    _, points = q.broker.history(["default"], 6, step=3)
    assert points["default"] == [{"ok|a": 24, "fail|a": 8}, {"ok|a": 7, "fail|a": 3}]
    _, coarse = q.broker.history(["default"], 6, step=6)
    assert coarse["default"] == [{"ok|a": 31, "fail|a": 11}]


def test_no_history_with_retention_zero(make_queue, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    q = make_queue(tasks={"retry_backoff_initial": 0.01, "retry_jitter": 0}, metrics={"history_retention": 0})
    _run_some(q)
    assert not list(redis_client.scan_iter(q.broker.keys.minutes_prefix + "*"))


def test_history_reads_cost_two_round_trips_whatever_the_range(
    queue: TaskQueue, round_trips: Counter[str]
) -> None:
    queue.broker.ping()  # the connection's own handshake is not the reads'
    for minutes in (60, 1440):
        round_trips.clear()
        queue.broker.history(queue.settings.queues_by_priority(), minutes)
        assert sum(round_trips.values()) == 2


def test_taskqueue_dashboard_serves_until_sigterm(redis_url: str) -> None:
    env = {**os.environ, "TASK_QUEUE_DASHBOARD_TOKEN": "tok-123", "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskqueue", "dashboard", "--url", redis_url, "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "dashboard of" in line, line
        port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        c = Client(port)
        assert c.get("/").status == 303
        assert c.get("/queues", headers={"Authorization": "Bearer tok-123"}).status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_taskqueue_dashboard_refuses_a_bad_token(redis_url: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "taskqueue", "dashboard", "--url", redis_url, "--token", " spaced "],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        timeout=60,
    )
    assert r.returncode == 2 and "--token" in r.stderr and "whitespace" in r.stderr


def test_the_extension_mounts_it_under_the_prefix_with_the_api_token(queue: TaskQueue) -> None:
    app = Flask("mounted")
    q = TaskQueue(queue.url, settings=make_settings(flask={"auth_token": "api-token"}))
    try:
        TaskQueueExtension(app, queue=q, dashboard=True)
        s = Served(app)
        try:
            c = s.client()
            assert c.get("/tasks/dashboard/").status == 303
            ok = c.get("/tasks/dashboard/queues", headers={"Authorization": "Bearer api-token"})
            assert ok.status == 200 and "api-token" not in ok.text
        finally:
            s.close()
    finally:
        q.close()
    with pytest.raises(TypeError, match="dashboard must be True or False"):
        TaskQueueExtension(Flask("x"), queue=queue, dashboard="yes")  # type: ignore[arg-type]
