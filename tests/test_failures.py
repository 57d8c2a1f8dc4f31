"""Failure handling (issue 3): retries, timeouts, dead letters, Redis faults."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis
import tenacity

from taskqueue import (
    BrokerError,
    Reject,
    Retry,
    TaskFailed,
    TaskQueue,
    TaskStatus,
    TaskTimeout,
    current_task,
)
from taskqueue.embedded import EmbeddedServer

from .brokerkit import ack, fetch
from .conftest import make_settings, wait_until


# -- retries ------------------------------------------------------------------------------
def test_retries_with_backoff_until_success_keep_a_history(any_queue: TaskQueue) -> None:
    calls = []

    @any_queue.task(max_retries=3)
    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    with any_queue.running(workers=1):
        handle = flaky.delay()
        assert handle.result(timeout=10) == "ok"
    record = handle.record(history=True)
    assert record.attempts == 3
    assert [h["message"] for h in record.history] == ["try 1", "try 2"]
    assert all(h["type"] == "ConnectionError" and "Traceback" in h["traceback"] for h in record.history)
    assert all(h["action"] == "retry" and h["retry_in_s"] >= 0 for h in record.history)
    assert handle.history == record.history


def test_exhausted_retries_go_dead_then_requeue_runs_again(any_queue: TaskQueue) -> None:
    fixed = threading.Event()

    @any_queue.task(max_retries=2)
    def broken(x):
        if not fixed.is_set():
            raise KeyError(x)
        return x

    with any_queue.running(workers=1):
        handle = broken.delay("k")
        with pytest.raises(TaskFailed, match="KeyError"):
            handle.result(timeout=10)
        assert handle.status is TaskStatus.DEAD
        (dead,) = any_queue.dead_letters()
        assert dead.id == handle.id and dead.attempts == 3 and dead.args == ["k"]
        assert dead.reason.startswith("retries exhausted after 3 attempt(s): KeyError")
        assert dead.error["type"] == "KeyError" and len(dead.history) == 3
        fixed.set()
        assert any_queue.requeue_dead(handle.id) == 1
        assert handle.result(timeout=10) == "k"
    assert handle.record().attempts == 1  # attempts were reset by the requeue
    assert any_queue.dead_letters() == []


def test_a_retry_waits_in_redis_not_in_a_worker_thread(make_queue) -> None:
    q = make_queue()
    first_try = threading.Event()

    @q.task(max_retries=1)
    def later():
        if not first_try.is_set():
            first_try.set()
            raise Retry(delay=60, reason="not yet")
        return "second try"

    @q.task
    def other():
        return "ran meanwhile"

    q.start_workers(1)
    handle = later.delay()
    wait_until(lambda: handle.status is TaskStatus.RETRYING)
    assert other.delay().result(timeout=10) == "ran meanwhile"  # the only thread is free
    due = q.broker.client.zscore(q.broker.keys.scheduled, handle.id)
    seconds, micros = q.broker.client.time()
    server_now = seconds * 1000 + micros // 1000
    assert 55_000 < due - server_now <= 60_000
    q.stop_workers()
    # The retry survives the worker going away: a new pool picks it up when due.
    q.broker.client.zadd(q.broker.keys.scheduled, {handle.id: 0})
    with q.running(workers=1):
        assert handle.result(timeout=10) == "second try"


def test_retry_on_and_dont_retry_on_and_custom_wait(any_queue: TaskQueue) -> None:
    @any_queue.task(max_retries=5, dont_retry_on=ValueError)
    def not_retried():
        raise ValueError("final")

    @any_queue.task(max_retries=5, retry_on=(TimeoutError,))
    def only_timeouts():
        raise KeyError("not a timeout")

    attempts = []

    @any_queue.task(max_retries=2, retry_wait=tenacity.wait_fixed(0.05))
    def fixed_wait():
        attempts.append(1)
        raise TimeoutError("again")

    with any_queue.running(workers=2):
        for task in (not_retried, only_timeouts):
            handle = task.delay()
            with pytest.raises(TaskFailed):
                handle.result(timeout=10)
            assert (handle.status, handle.attempts) == (TaskStatus.FAILED, 1)
        handle = fixed_wait.delay()
        with pytest.raises(TaskFailed, match="TimeoutError"):
            handle.result(timeout=10)
    assert [h.get("retry_in_s") for h in handle.history] == [0.05, 0.05, None]
    assert any_queue.dead_letters()[0].id == handle.id


def test_reject_goes_straight_to_the_dead_letter_queue(any_queue: TaskQueue) -> None:
    @any_queue.task(max_retries=5)
    def picky(x):
        raise Reject(f"cannot handle {x}")

    with any_queue.running(workers=1):
        handle = picky.delay(3)
        with pytest.raises(TaskFailed):
            handle.result(timeout=10)
    assert handle.status is TaskStatus.DEAD and handle.attempts == 1
    assert any_queue.dead_letters()[0].reason == "cannot handle 3"


def test_class_tasks_take_the_same_options(any_queue: TaskQueue, registry) -> None:
    from taskqueue import Task

    class Flaky(Task, registry=registry):
        name = "flaky_class"
        max_retries = 1
        retry_wait = tenacity.wait_fixed(0)
        dont_retry_on = (LookupError,)
        n: int

        def execute(self):
            raise IndexError(self.n) if self.n else ZeroDivisionError(self.n)

    with any_queue.running(workers=1):
        lookup = any_queue.enqueue(Flaky(n=1))
        zero = any_queue.enqueue(Flaky(n=0))
        for h in (lookup, zero):
            with pytest.raises(TaskFailed):
                h.result(timeout=10)
    assert (lookup.status, lookup.attempts) == (TaskStatus.FAILED, 1)
    assert (zero.status, zero.attempts) == (TaskStatus.DEAD, 2)


# -- timeouts -------------------------------------------------------------------------------
def test_a_pure_python_task_over_its_timeout_is_interrupted(any_queue: TaskQueue) -> None:
    @any_queue.task(timeout=0.3, max_retries=0)
    def spin():
        while True:
            sum(range(1000))

    @any_queue.task
    def quick():
        return "next"

    with any_queue.running(workers=1):
        handle = spin.delay()
        with pytest.raises(TaskFailed) as info:
            handle.result(timeout=10)
        assert info.value.error_type == "taskqueue.errors.TaskTimeout"
        assert "0.3 s" in info.value.error_message
        # The same thread was freed by the asynchronous exception and serves on.
        assert quick.delay().result(timeout=10) == "next"
        assert any_queue.worker_count() == 1


def test_a_task_stuck_in_c_code_is_abandoned_and_its_slot_replaced(any_queue: TaskQueue) -> None:
    returned = threading.Event()

    @any_queue.task(timeout=0.2, max_retries=0)
    def stuck():
        try:
            time.sleep(2)  # one blocking C call: no bytecode runs until it returns
        finally:
            returned.set()
        return "too late"

    @any_queue.task
    def quick():
        return "served"

    with any_queue.running(workers=1):
        handle = stuck.delay()
        with pytest.raises(TaskFailed, match="TaskTimeout"):
            handle.result(timeout=10)
        # Capacity is kept: another task runs while the stuck thread still sleeps.
        assert quick.delay().result(timeout=5) == "served"
        assert not returned.is_set()
        assert any_queue.worker_count() == 1
        assert returned.wait(10)
    # Its late value never overwrites the recorded timeout.
    record = handle.record()
    assert record.status == "DEAD" and record.result is None


def test_a_timeout_follows_the_retry_policy(any_queue: TaskQueue) -> None:
    tries = []

    @any_queue.task(timeout=0.2, max_retries=2, retry_wait=tenacity.wait_fixed(0))
    def slow_then_fast():
        tries.append(1)
        if len(tries) == 1:
            while not current_task().cancelled:
                current_task().wait(0.01)
            current_task().check()
        return len(tries)

    with any_queue.running(workers=1):
        assert slow_then_fast.delay().result(timeout=10) == 2


def test_cooperative_cancel_of_a_running_task(any_queue: TaskQueue) -> None:
    started = threading.Event()
    seen = []

    @any_queue.task
    def long_job():
        started.set()
        ctx = current_task()
        while not ctx.wait(5):
            pass
        seen.append(ctx.cancel_reason)
        ctx.check()

    with any_queue.running(workers=1):
        handle = long_job.delay()
        assert started.wait(10)
        assert handle.cancel() is False  # running: asked to stop, not stopped
        with pytest.raises(TaskFailed, match="cancelled"):
            handle.result(timeout=10)
    assert seen == ["cancelled"]
    assert handle.status is TaskStatus.CANCELLED


def test_task_timeout_error_carries_its_fields() -> None:
    err = TaskTimeout("abc", 1.5)
    assert (err.task_id, err.timeout_seconds) == ("abc", 1.5)
    assert str(err) == "task abc exceeded its timeout of 1.5 s"


def test_an_outcome_from_a_lost_lease_never_overwrites_the_newer_one(any_queue: TaskQueue) -> None:
    @any_queue.task
    def job():
        return 1

    handle = job.delay()
    broker = any_queue.broker
    old = fetch(broker, "worker-a", ["default"], 1).deliveries[0]
    # The lease is lost (say, the worker stalled); the task is delivered again.
    broker.client.zadd(broker.group("default").leases, {handle.id: 0})
    new = fetch(broker, "worker-b", ["default"], 1).deliveries[0]
    assert new.id == old.id and new.attempt == 2 and new.token != old.token
    assert ack(broker, new, b"\x02", 5)
    # The stalled worker wakes up and answers late: both kinds of answer are ignored.
    assert ack(broker, old, b"\x01", 5) is False
    stored, _ = broker.fail(old, action="dead", history_entry={}, error=b"", reason="late")
    assert stored is False
    assert handle.result(timeout=1) == 2 and handle.status is TaskStatus.SUCCEEDED


# -- dead-letter bounds ----------------------------------------------------------------------
def test_the_dead_letter_queue_is_bounded_and_says_when_it_drops(make_queue, caplog) -> None:
    q = make_queue(dead_letter={"max_size": 3})

    @q.task(max_retries=0)
    def poison(i):
        raise RuntimeError(i)

    caplog.set_level(logging.WARNING, "taskqueue")
    with q.running(workers=1):
        for i in range(5):  # one at a time: a dropped entry's record is gone with it
            with pytest.raises(TaskFailed):
                poison.delay(i).result(timeout=10)
    assert [d.args for d in q.dead_letters()] == [[2], [3], [4]]
    assert q.broker.stats(["default"])["default"]["dead_dropped"] == 2
    assert "dead-letter queue default over its bound: 1 oldest entries dropped" in caplog.text
    assert q.purge_dead() == 3 and q.dead_letters() == []


def test_dead_letters_expire_after_their_ttl(make_queue) -> None:
    q = make_queue(dead_letter={"ttl": 0.3})

    @q.task(max_retries=0)
    def poison():
        raise RuntimeError("x")

    with q.running(workers=1), pytest.raises(TaskFailed):
        poison.delay().result(timeout=10)
    assert len(q.dead_letters()) == 1
    wait_until(lambda: q.dead_letters() == [], timeout=5)
    assert q.broker.client.zcard(q.broker.keys.dead("default")) == 0


# -- Redis faults ---------------------------------------------------------------------------
def test_producer_retries_then_raises_broker_error_without_the_password(registry) -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    q = TaskQueue(
        f"redis://user:s3cr3t-pw@127.0.0.1:{port}/0",
        settings=make_settings(redis={"retry_attempts": 3, "retry_max_seconds": 2}),
        registry=registry,
    )

    @q.task
    def job():
        return 1

    started = time.monotonic()
    with pytest.raises(BrokerError) as info:
        job.delay()
    assert time.monotonic() - started < 10
    text = str(info.value)
    assert "cannot reach Redis while enqueueing 1 task(s)" in text
    assert "s3cr3t-pw" not in text and "user:***@127.0.0.1" in text
    assert "s3cr3t-pw" not in repr(q)
    with pytest.raises(BrokerError, match="cannot reach Redis while loading scripts to start workers"):
        q.start_workers(2)
    assert q.worker_count() == 0
    q.close()


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own, to restart, flush or starve."""
    server = EmbeddedServer(tmp_path / "server")
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_workers_survive_a_server_restart_without_losing_a_task(own_server, registry, caplog) -> None:
    q = TaskQueue(own_server.url, settings=make_settings(), registry=registry)
    counter = redis.Redis(unix_socket_path=own_server.socket_path)

    @q.task
    def tick(i):
        counter.sadd("done", i)

    handles = q.enqueue_many([tick.s(i) for i in range(2000)])
    caplog.set_level(logging.WARNING, "taskqueue")
    q.start_workers(4)
    wait_until(lambda: counter.scard("done") >= 300)
    own_server.stop()  # SIGTERM: the server writes its append-only file and exits
    own_server.start()  # same data directory: the queue is still there
    try:
        wait_until(lambda: counter.scard("done") == 2000, timeout=60)
        assert all(h.status is TaskStatus.SUCCEEDED for h in handles[:50] + handles[-50:])
    finally:
        q.stop_workers()
        q.close()
    assert caplog.text.count("unreachable or failing") == 1  # one line per outage
    assert "Redis is back" in caplog.text


def test_scripts_are_reloaded_after_a_script_flush(own_server, registry) -> None:
    q = TaskQueue(own_server.url, settings=make_settings(), registry=registry)

    @q.task
    def double(x):
        return 2 * x

    with q.running(workers=2):
        assert double.delay(1).result(timeout=10) == 2
        q.broker.client.script_flush()
        handles = q.enqueue_many([double.s(i) for i in range(20)])
        assert [h.result(timeout=10) for h in handles] == [2 * i for i in range(20)]
        q.broker.client.script_flush()
        assert double.delay(5).result(timeout=10) == 10
    q.close()


def test_out_of_memory_reaches_producers_and_workers_keep_going(own_server, registry) -> None:
    q = TaskQueue(own_server.url, settings=make_settings(), registry=registry)
    admin = redis.Redis(unix_socket_path=own_server.socket_path)

    @q.task
    def echo(x):
        return x

    with q.running(workers=2):
        assert echo.delay(1).result(timeout=10) == 1
        admin.set("ballast", "x" * 2_000_000)
        admin.config_set("maxmemory", admin.info("memory")["used_memory"] - 100_000)
        with pytest.raises(BrokerError, match=r"out of memory.*noeviction"):
            echo.delay(2)
        admin.delete("ballast")
        admin.config_set("maxmemory", 0)
        assert echo.delay(3).result(timeout=10) == 3
    q.close()


def test_a_read_only_replica_gives_a_clear_error(own_server, registry) -> None:
    q = TaskQueue(own_server.url, settings=make_settings(), registry=registry)
    admin = redis.Redis(unix_socket_path=own_server.socket_path)

    @q.task
    def echo(x):
        return x

    admin.replicaof("127.0.0.1", "1")  # nobody there: it stays a read-only replica
    try:
        with pytest.raises(BrokerError, match=r"read-only replica.*primary"):
            echo.delay(1)
    finally:
        admin.replicaof("NO", "ONE")
    with q.running(workers=1):
        assert echo.delay(2).result(timeout=10) == 2
    q.close()


def test_the_retry_decision_is_a_function_of_the_error_the_attempt_and_the_policy() -> None:
    """worker.failure.decide, apart from the Redis call that stores it."""
    from taskqueue.retry import RetryPolicy
    from taskqueue.worker.failure import Decision, decide

    def fixed(state) -> float:
        return 0.5

    policy = RetryPolicy(max_retries=2, dont_retry_on=(KeyError,))
    assert decide(ValueError("x"), 1, policy, fixed) == Decision("retry", 0.5)
    assert decide(ValueError("x"), 3, policy, fixed) == Decision(
        "dead", 0.0, "retries exhausted after 3 attempt(s): ValueError: x"
    )
    assert decide(KeyError("k"), 1, policy, fixed) == Decision(
        "failed", 0.0, "KeyError: 'k' (not retried by policy)"
    )
    assert decide(Retry(delay=7), 2, policy, fixed).action == "retry"
    assert decide(Retry(delay=7), 2, policy, fixed).delay == 7
    assert decide(Retry(), 3, policy, fixed).action == "dead"
    assert decide(Reject("bad-payload: junk"), 1, policy, fixed, force="dead") == Decision(
        "dead", 0.0, "bad-payload: junk"
    )
    assert decide(TaskTimeout("t", 1), 1, policy, fixed).action == "retry"  # timeouts follow the policy
    assert decide(ValueError("x"), 1, policy, fixed, force="cancelled") == Decision(
        "cancelled", 0.0, "ValueError: x"
    )
