"""Fast tests of the fixes the chaos suite (tests/chaos/) led to; the chaos
scenarios prove the same things end to end, with real faults."""

from __future__ import annotations

import logging
import threading

import pytest
import redis

from taskqueue import TaskQueue, current_task
from taskqueue.broker import EnqueueRequest
from taskqueue.embedded import EmbeddedServer
from taskqueue.errors import BrokerError

from .brokerkit import ack, fetch
from .conftest import make_settings, wait_until


def test_a_repeated_enqueue_request_is_not_a_duplicate(queue: TaskQueue) -> None:
    """A reply lost with a dropped connection makes the client send the same
    request again: that must not turn into 'a task with this id exists'."""
    req = EnqueueRequest(id="t1", name="n", queue="default", payload=b"\x90")
    assert queue.broker.enqueue([req]) == [True]
    assert queue.broker.enqueue([req]) == [True]  # the same request again
    assert queue.pending("default") == {"default": 1}
    other = EnqueueRequest(id="t1", name="n", queue="default", payload=b"\x90")
    assert queue.broker.enqueue([other]) == [False]  # a different request, same id


def test_a_repeated_ack_is_recognised_and_a_stale_one_refused(queue: TaskQueue) -> None:
    @queue.task
    def job():
        return 1

    handle = job.delay()
    broker = queue.broker
    delivery = fetch(broker, "w", ["default"], 1).deliveries[0]
    assert ack(broker, delivery, b"\x01", 1) is True
    assert ack(broker, delivery, b"\x01", 1) is True  # repeated
    stale = type(delivery)(delivery.id, b"", "", 1, "w:0:1", "default")
    assert ack(broker, stale, b"\x02", 1) is False
    assert handle.result(timeout=1) == 1


def test_a_lease_that_cannot_be_renewed_stops_the_attempt_before_it_expires(make_queue, caplog) -> None:
    """Heartbeats fail (Redis unreachable for this process): the running attempt
    is interrupted before the server could give the task to someone else."""
    q = make_queue()
    stopped = threading.Event()
    seen: list[tuple[int, str]] = []
    #: (lease deadline, server time), read inside the task the moment it is stopped:
    #: what the server thought at that moment, whatever the test thread's delays.
    at_stop: list[tuple[float | None, int]] = []

    @q.task
    def spin():
        ctx = current_task()
        if ctx.attempt > 1:
            return "second attempt"
        try:
            while True:
                sum(range(100))
        except BaseException:
            client = q.broker.client
            seconds, micros = client.time()
            at_stop.append((client.zscore(q.broker.keys.leases, ctx.id), seconds * 1000 + micros // 1000))
            seen.append((ctx.attempt, ctx.cancel_reason))
            stopped.set()
            raise

    caplog.set_level(logging.WARNING, "taskqueue")
    q.start_workers(1)
    pool = q.pool
    real = pool.broker.heartbeat
    outage = threading.Event()

    def heartbeat(*args, **kwargs):
        if outage.is_set():
            raise redis.exceptions.ConnectionError("simulated outage")
        return real(*args, **kwargs)

    pool.broker.heartbeat = heartbeat  # this process alone loses Redis
    try:
        handle = spin.delay()
        wait_until(lambda: handle.status.value == "RUNNING")
        outage.set()
        assert stopped.wait(5)
        ((lease_deadline, server_now_ms),) = at_stop
        assert lease_deadline is not None  # stopped while the server still held the lease
        assert lease_deadline > server_now_ms
        outage.clear()
        assert handle.result(timeout=10) == "second attempt"
    finally:
        pool.broker.heartbeat = real
        q.stop_workers()
    assert seen == [(1, "lease-lost")]
    record = handle.record(history=True)
    assert record.attempts == 2 and [h["event"] for h in record.history] == ["lease-expired"]
    assert "attempt 1 lost its lease (not renewed for" in caplog.text


@pytest.fixture
def own_server(tmp_path):
    server = EmbeddedServer(tmp_path / "server")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "noeviction"])
def test_start_workers_warns_when_redis_may_evict_tasks(own_server, registry, caplog, policy) -> None:
    redis.Redis(unix_socket_path=own_server.socket_path).config_set("maxmemory-policy", policy)
    q = TaskQueue(own_server.url, settings=make_settings(), registry=registry)
    caplog.set_level(logging.WARNING, "taskqueue")
    q.start_workers(1)
    q.close()
    warned = f"Redis maxmemory-policy is {policy!r}" in caplog.text
    assert warned is (policy != "noeviction")
    if warned:
        assert "Set maxmemory-policy noeviction" in caplog.text


def test_workers_start_while_redis_is_out_of_memory(own_server, registry, caplog) -> None:
    admin = redis.Redis(unix_socket_path=own_server.socket_path)
    q = TaskQueue(own_server.url, settings=make_settings(), registry=registry)

    @q.task
    def echo(x):
        return x

    handle = echo.delay(1)
    admin.config_set("maxmemory", 1)  # every write that needs memory is refused
    caplog.set_level(logging.WARNING, "taskqueue")
    try:
        q.start_workers(1)  # the registration heartbeat is refused: not fatal
        with pytest.raises(BrokerError, match="out of memory"):
            echo.delay(2)
    finally:
        admin.config_set("maxmemory", 0)
    assert handle.result(timeout=10) == 1
    q.close()
    assert "Redis is unreachable or failing" in caplog.text


def test_probing_a_server_that_is_not_there_answers_at_once(tmp_path) -> None:
    """redis-py's default retries made each start of the embedded server wait
    about 4 s on its own probe of a socket that could not exist yet."""
    import time

    server = EmbeddedServer(tmp_path / "absent")
    started = time.monotonic()
    assert server.answering() is False
    assert time.monotonic() - started < 1.0
