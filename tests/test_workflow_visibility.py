"""WAITING is visible: handle, metrics, monitor, ``taskqueue status`` and the HTTP API
show waiting tasks and what they wait for; ``h.dependencies`` / ``h.dependents``."""

from __future__ import annotations

import json
from typing import Any

from taskqueue import Signature, TaskQueue, TaskStatus, chord

from .test_cli import run
from .test_flask import app_queue, example, load_example, serve


def test_metrics_monitor_and_status_count_waiting_tasks(queue: TaskQueue, redis_url: str) -> None:
    @queue.task(queue="low")
    def part(i: int) -> int:
        return i

    @queue.task
    def total(xs: list[int]) -> int:
        return sum(xs)

    c = chord([part.s(i) for i in range(3)], total.s()).delay()
    assert c.body.status == TaskStatus.WAITING
    metrics = queue.get_metrics()
    assert metrics.total_waiting_tasks == 1 and metrics.queue("default").waiting_tasks == 1
    assert "waiting=1" in repr(metrics)
    snap = queue.broker.snapshot(queue.settings.queues_by_priority())
    assert snap.waiting == {"high": 0, "default": 1, "low": 0}
    from taskqueue.monitor.render import totals_html

    assert "waiting <b>1</b>" in totals_html(snap)
    data = json.loads(run("status", "--url", redis_url, "--json").output)
    assert data["totals"]["waiting"] == 1
    assert {q["name"]: q["waiting"] for q in data["queues"]}["default"] == 1
    assert data["waiting"] == [{"id": c.body.id, "waiting_for": sorted(h.id for h in c.header.tasks)}]
    text = run("status", "--url", redis_url).output
    assert "WAITING: 1 task(s) waiting for their dependencies" in text and f"{c.body.id} waits for 3" in text
    with queue.running(workers=2):
        assert c.result(timeout=10) == 3
    assert queue.get_metrics().total_waiting_tasks == 0


def test_handles_show_both_directions_and_the_http_api_shows_waiting(example: Any) -> None:
    server, q = example()  # the example app, its workers running in this process
    later = q.schedule(Signature("example.word_count", (), {"text": "later"}), delay=60)
    done = q.enqueue(Signature("example.word_count", (), {"text": "a b"}))
    done.result(timeout=10)
    waiting = q.enqueue(load_example().WordCount(text="c d"), depends_on=[later, done])
    assert waiting.status == TaskStatus.WAITING
    assert waiting.dependencies == [later.id, done.id]
    assert later.dependents == [waiting.id] and done.dependents == [waiting.id]
    assert q.broker.waiting_for([waiting.id]) == [[later.id]]  # done had succeeded already
    reply = server.request("GET", f"/tasks/{waiting.id}")
    assert reply.status == 200
    doc = reply.json
    assert doc["status"] == "WAITING" and doc["dependencies"] == [later.id, done.id]
    later.cancel()
    doc = server.request("GET", f"/tasks/{waiting.id}").json
    assert doc["status"] == "CANCELLED" and doc["cause"] == later.id and later.id in doc["reason"]


__all__ = ["app_queue", "example", "serve"]  # the fixtures used here
