"""The Core guarantees (issue 2), each against a real server; the shared
contract tests also run against memory:// (fakeredis)."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from redis.crc import key_slot

from taskqueue import (
    BrokerError,
    PayloadTooLarge,
    SerializationError,
    Signature,
    Task,
    TaskFailed,
    TaskQueue,
    TaskStatus,
)
from taskqueue.broker import Keys
from taskqueue.registry import TaskRegistry

from .conftest import make_settings, wait_until

ROOT = Path(__file__).resolve().parent.parent


# -- the contract, on both backends ---------------------------------------------------
def test_function_task_round_trip(any_queue: TaskQueue) -> None:
    @any_queue.task
    def add(x, y):
        return x + y

    handle = add.delay(2, 3)
    assert handle.status is TaskStatus.PENDING
    with any_queue.running(workers=2):
        assert handle.result(timeout=10) == 5
    assert handle.status is TaskStatus.SUCCEEDED
    assert add(1, 1) == 2  # calling the task still runs it locally


def test_class_task_fields_are_the_payload(any_queue: TaskQueue, registry) -> None:
    class EmailTask(Task, registry=registry):
        name = "email_task"
        max_retries = 3
        timeout_seconds = 30
        to: str
        subject: str = ""

        def execute(self):
            return {"status": "sent", "to": self.to, "subject": self.subject}

    assert "email_task" in registry
    with pytest.raises(TypeError):
        EmailTask()  # the required field is missing
    with any_queue.running(workers=1):
        result = any_queue.enqueue(EmailTask(to="a@b.c", subject="hi")).result(timeout=10)
    assert result == {"status": "sent", "to": "a@b.c", "subject": "hi"}


def test_enqueue_many_is_one_round_trip(any_queue: TaskQueue, registry, round_trips) -> None:
    @any_queue.task
    def mul(x, y):
        return x * y

    class Ping(Task, registry=registry):
        name = "ping"

        def execute(self):
            return "pong"

    any_queue.broker.scripts.load_all(any_queue.broker.client)  # once per server, not per call
    round_trips.clear()
    handles = any_queue.enqueue_many([mul.s(i, 2) for i in range(50)] + [Ping()])
    assert round_trips["MainThread"] == 1  # (a cluster's wake-up relays of other tests may linger)
    with any_queue.running(workers=4):
        results = [h.result(timeout=10) for h in handles]
    assert results == [i * 2 for i in range(50)] + ["pong"]


def test_failure_surfaces_remote_type_message_and_traceback(any_queue: TaskQueue) -> None:
    @any_queue.task(max_retries=0)
    def explode(n):
        raise ValueError(f"bad value {n}")

    with any_queue.running(workers=1):
        handle = explode.delay(7)
        with pytest.raises(TaskFailed) as info:
            handle.result(timeout=10)
    err = info.value
    assert err.error_type == "ValueError"
    assert err.error_message == "bad value 7"
    assert "raise ValueError" in err.remote_traceback
    assert handle.status is TaskStatus.DEAD


def test_result_timeout_raises_timeout_error(any_queue: TaskQueue) -> None:
    @any_queue.task
    def never_run():
        return 1

    handle = never_run.delay()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="still PENDING"):
        handle.result(timeout=0.3)
    assert time.monotonic() - started < 5


def test_cancel_pending_task_never_runs(any_queue: TaskQueue) -> None:
    ran = threading.Event()

    @any_queue.task
    def job():
        ran.set()

    handle = job.delay()
    assert handle.cancel() is True
    assert handle.status is TaskStatus.CANCELLED
    marker = job.delay()
    with any_queue.running(workers=1):
        marker.result(timeout=10)
    assert ran.is_set()  # the marker ran
    with pytest.raises(TaskFailed, match="cancelled"):
        handle.result(timeout=1)
    assert any_queue.pending() == {"high": 0, "default": 0, "low": 0}


def test_priority_then_fifo_with_one_worker(any_queue: TaskQueue) -> None:
    order: list[str] = []

    @any_queue.task
    def note(label):
        order.append(label)

    for i in range(3):
        note.apply_async(args=(f"low{i}",), queue="low")
        note.apply_async(args=(f"default{i}",), queue="default")
        note.apply_async(args=(f"high{i}",), queue="high")
    last = note.apply_async(args=("end",), queue="low")
    with any_queue.running(workers=1):
        last.result(timeout=10)
    assert order == [
        "high0",
        "high1",
        "high2",
        "default0",
        "default1",
        "default2",
        "low0",
        "low1",
        "low2",
        "end",
    ]


# -- bad input ------------------------------------------------------------------------
def test_unserializable_or_oversized_arguments_write_nothing(make_queue, redis_client) -> None:
    q = make_queue(tasks={"max_payload_bytes": 1000})

    @q.task
    def echo(value):
        return value

    with pytest.raises(SerializationError, match="cannot be serialized"):
        echo.delay(object())
    with pytest.raises(SerializationError):
        q.enqueue_many([echo.s(1), echo.s({1, 2})])  # the bad one stops the whole batch
    with pytest.raises(PayloadTooLarge, match="over the limit of 1000 bytes"):
        echo.delay("x" * 2000)
    with pytest.raises(TypeError, match="missing a required argument"):
        echo.delay()
    assert redis_client.dbsize() == 0


def test_enqueue_is_all_or_nothing_when_redis_refuses_a_write(queue, redis_client) -> None:
    @queue.task
    def job():
        return 1

    # Someone stored a string where the low queue's list lives: the write fails...
    redis_client.set(Keys().queue("low"), "not a list")
    with pytest.raises(BrokerError, match="WRONGTYPE"):
        job.apply_async(queue="low")
    with pytest.raises(BrokerError, match=r"WRONGTYPE.*nothing was enqueued"):
        queue.enqueue_many([job.s(), job.s(), Signature(job.name, queue="low"), job.s()])
    # ...and no half-written task, nor half a batch, is left behind.
    assert redis_client.keys(Keys().task_prefix + "*") == []
    assert redis_client.llen(Keys().queue("default")) == 0
    # The same for a delayed task when the schedule is not a sorted set (a lone task's
    # write is checked by the write itself; a batch's keys are checked first).
    redis_client.delete(Keys().queue("low"))
    redis_client.set(Keys().scheduled, "not a zset")
    with pytest.raises(BrokerError, match=r"WRONGTYPE .* holds a string, not a zset; nothing was enqueued"):
        job.apply_async(delay=5)
    with pytest.raises(BrokerError, match=r"WRONGTYPE .* holds a string, not a zset; nothing was enqueued"):
        queue.enqueue_many([job.s(), Signature(job.name, delay=5)])
    assert redis_client.keys(Keys().task_prefix + "*") == []
    assert redis_client.llen(Keys().queue("default")) == 0
    redis_client.delete(Keys().scheduled)
    job.delay()  # the queue itself is fine: a lone task is written whole
    assert len(redis_client.keys(Keys().task_prefix + "*")) == 1


def _wait_dead(q: TaskQueue, count: int) -> list:
    return wait_until(lambda: len(q.dead_letters()) >= count and q.dead_letters(), timeout=10)


def test_bad_entries_go_to_the_dead_letter_queue_and_the_worker_keeps_serving(
    backend_url: str, registry: TaskRegistry
) -> None:
    # No grace for a task that no live worker serves (the default waits for a deploy).
    settings = make_settings(workers={"unknown_task_grace": 0})
    with TaskQueue(backend_url, settings=settings, registry=registry) as any_queue:
        _bad_entries(any_queue)


def _bad_entries(any_queue: TaskQueue) -> None:
    @any_queue.task
    def add(x, y):
        return x + y

    client = any_queue.broker.client
    keys = any_queue.broker.group("default")
    # 1. raw bytes straight into the queue list, with no task behind them
    client.rpush(keys.queue("default"), b"\x93garbage\xff")
    # 2. a task whose payload is not a valid envelope
    client.hset(
        keys.task("badpayload"),
        mapping={
            "payload": b"\xc1\xc1",
            "queue": "default",
            "status": "PENDING",
            "attempts": 0,
            "max_retries": 3,
            "name": add.name,  # a served name: the worker finds out the payload is bad
        },
    )
    client.rpush(keys.queue("default"), "badpayload")
    # 3. a valid envelope naming no registered task, 4. arguments that do not fit
    from taskqueue.serialization import Envelope, encode

    for task_id, env in (
        ("unknown", Envelope("no.such.task", (1,))),
        ("badargs", Envelope(add.name, (1, 2, 3))),
    ):
        client.hset(
            keys.task(task_id),
            mapping={
                "payload": encode(env, max_bytes=10_000),
                "queue": "default",
                "status": "PENDING",
                "attempts": 0,
                "max_retries": 3,
                "name": env.name,
            },
        )
        client.rpush(keys.queue("default"), task_id)
    good = add.delay(20, 22)
    with any_queue.running(workers=2):
        assert good.result(timeout=10) == 42
        dead = _wait_dead(any_queue, 4)
    reasons = {d.id: d.reason for d in dead}
    assert reasons["badpayload"].startswith("bad-payload: task payload is not valid msgpack")
    assert reasons["unknown"].startswith("unknown-task: no live worker serves a task named 'no.such.task'")
    assert reasons["badargs"].startswith("bad-arguments: arguments do not fit")
    garbage = [d for d in dead if d.id not in ("badpayload", "unknown", "badargs")]
    assert len(garbage) == 1 and garbage[0].reason.startswith("bad-entry")
    assert any_queue.worker_count() == 0  # stopped cleanly after all that


# -- graceful stop ---------------------------------------------------------------------
def test_stop_lets_running_tasks_finish_and_returns_prefetched_ones_to_the_front(
    make_queue, redis_client
) -> None:
    # A window long enough that, after one quick task, the thread leases 1 + 3 at a time.
    q = make_queue(workers={"prefetch": 3, "prefetch_window": 60})
    started, release = threading.Event(), threading.Event()

    @q.task
    def slow(label):
        started.set()
        release.wait(10)
        return label

    @q.task
    def quick(label):
        return label

    q.start_workers(1)
    assert quick.delay("warm-up").result(timeout=10) == "warm-up"  # the thread learns tasks are quick
    # One atomic batch, so the idle thread's single fetch sees all five.
    first, *rest, extra = q.enqueue_many([slow.s("a")] + [quick.s(x) for x in "bcde"])
    assert started.wait(10)  # running a; b, c, d prefetched; e left in the queue
    stopper = threading.Thread(target=q.stop_workers)
    stopper.start()
    release.set()
    stopper.join(15)
    assert not stopper.is_alive()
    assert first.result(timeout=1) == "a"  # the running task finished
    keys = Keys()
    queued = [i.decode() for i in redis_client.lrange(keys.queue("default"), 0, -1)]
    assert queued == [h.id for h in rest] + [extra.id]  # back at the front, in order
    for h in rest:
        record = h.record()
        assert (record.status, record.attempts) == ("PENDING", 0)


def test_prefetched_tasks_do_not_wait_behind_a_slow_one(make_queue) -> None:
    q = make_queue()  # default prefetch: up to 16 beyond the running task, 5 ms of work ahead
    started, release = threading.Event(), threading.Event()

    @q.task
    def slow():
        started.set()
        release.wait(20)

    @q.task
    def quick(i):
        return i

    q.start_workers(1)
    warm = q.enqueue_many([quick.s(i) for i in range(20)])
    assert [h.result(timeout=10) for h in warm] == list(range(20))  # now it prefetches
    first, *others = q.enqueue_many([slow.s()] + [quick.s(i) for i in range(5)])
    assert started.wait(10)  # the only thread leased all six and runs the slow one
    q.scale_workers(2)
    # The five quick ones run on the new thread while the slow one still blocks.
    assert [h.result(timeout=10) for h in others] == list(range(5))
    assert q.pool.handed_back == 5
    release.set()
    first.result(timeout=10)


# -- at-least-once, with real processes ---------------------------------------------------
def _spawn_worker(url: str, threads: int = 2) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "proc_worker.py"), url, str(threads)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def _ledger_queue(url: str) -> TaskQueue:
    sys.path.insert(0, str(ROOT / "tests"))
    from proc_worker import build

    return build(url)


def _strings(values) -> set[str]:
    return {v.decode() for v in values}


def test_a_killed_worker_process_loses_no_task(redis_url, redis_client) -> None:
    producer = _ledger_queue(redis_url)
    held = [producer.enqueue(Signature("ledger.record", (f"held{i}", True))) for i in range(2)]
    quick = [producer.enqueue(Signature("ledger.record", (f"quick{i}",))) for i in range(10)]
    victim = _spawn_worker(redis_url, threads=2)
    # Both threads of the victim are now inside a held task: kill the process there.
    wait_until(lambda: redis_client.scard("ledger:started") >= 2)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed = _strings(redis_client.smembers("ledger:started")) - _strings(
        redis_client.smembers("ledger:done")
    )
    assert killed == {"held0", "held1"}
    rescuer = _spawn_worker(redis_url, threads=2)
    try:
        for i in range(2):
            redis_client.rpush(f"ledger:go:held{i}", 1)
        results = [h.result(timeout=30) for h in held + quick]
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.wait(15)
        producer.close()
    assert results == [f"held{i}" for i in range(2)] + [f"quick{i}" for i in range(10)]
    for h in held:
        record = h.record(history=True)
        assert record.attempts == 2  # the lost attempt is counted
        assert record.history[0]["event"] == "lease-expired"
    assert [int(redis_client.get(f"ledger:runs:held{i}")) for i in range(2)] == [2, 2]
    assert [int(redis_client.get(f"ledger:runs:quick{i}")) for i in range(10)] == [1] * 10


def test_a_long_task_keeps_its_lease_and_runs_once(redis_url, redis_client) -> None:
    producer = _ledger_queue(redis_url)
    first = _spawn_worker(redis_url, threads=1)
    second = None
    try:
        handle = producer.enqueue(Signature("ledger.record", ("long", True)))
        wait_until(lambda: redis_client.sismember("ledger:started", "long"))
        first_deadline = redis_client.zscore(Keys().leases, handle.id)
        second = _spawn_worker(redis_url, threads=2)  # idle, and sweeping expired leases
        lease_ms = 0.2 * 3 * 1000
        # Keep the task running until its lease has been renewed past three lease lengths.
        wait_until(lambda: redis_client.zscore(Keys().leases, handle.id) > first_deadline + 3 * lease_ms)
        redis_client.rpush("ledger:go:long", 1)
        assert handle.result(timeout=20) == "long"
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
        producer.close()
    assert int(redis_client.get("ledger:runs:long")) == 1
    assert handle.record().attempts == 1


# -- results from another process ----------------------------------------------------------
def test_results_are_readable_from_another_process(queue, redis_url) -> None:
    @queue.task(max_retries=0)
    def compute(x):
        if x < 0:
            raise ArithmeticError("negative")
        return {"square": x * x}

    with queue.running(workers=1):
        ok, bad = compute.delay(9), compute.delay(-1)
        ok.result(timeout=10)
        with pytest.raises(TaskFailed):
            bad.result(timeout=10)
    code = (
        "import sys; from taskqueue import TaskQueue, TaskFailed\n"
        f"q = TaskQueue({redis_url!r})\n"
        f"print(q.get({ok.id!r}).result(timeout=5))\n"
        "try:\n"
        f"    q.get({bad.id!r}).result(timeout=5)\n"
        "except TaskFailed as e:\n"
        "    print(e.error_type, e.error_message, 'Traceback' in e.remote_traceback)\n"
        "q.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["{'square': 81}", "ArithmeticError negative True"]


def test_the_done_signal_is_written_only_for_tasks_somebody_waits_on(queue, redis_client) -> None:
    release = threading.Event()

    @queue.task
    def one(i):
        return i

    @queue.task
    def held():
        release.wait(10)
        return "held"

    with queue.running(workers=2):
        unwatched = queue.enqueue_many([one.s(i) for i in range(20)])
        watched = held.delay()
        results = []
        waiter = threading.Thread(target=lambda: results.append(watched.result(timeout=10)))
        waiter.start()
        wait_until(lambda: redis_client.hget(Keys().task(watched.id), "waiters"))
        release.set()
        waiter.join(10)
        assert results == ["held"]
        wait_until(lambda: all(h.record().status == "SUCCEEDED" for h in unwatched))
    done = {k.decode() for k in redis_client.keys(Keys().done_prefix + "*")}
    assert done == {Keys().done(watched.id)}
    assert [h.result(timeout=1) for h in unwatched] == list(range(20))  # all readable later


def test_results_expire_after_their_ttl(make_queue) -> None:
    q = make_queue(tasks={"result_ttl": 0.5})

    @q.task
    def one():
        return 1

    with q.running(workers=1):
        handle = one.delay()
        assert handle.result(timeout=10) == 1
    ttl = q.broker.client.pttl(q.broker.keys.task(handle.id))
    assert 0 < ttl <= 500


# -- no busy polling -----------------------------------------------------------------------
def test_an_idle_pool_uses_almost_no_cpu_and_wakes_at_once(queue) -> None:
    @queue.task
    def noop():
        return None

    queue.start_workers(8)
    try:
        noop.delay().result(timeout=10)  # warm: every thread is now idle, blocked on Redis
        cpu0, wall0 = time.process_time(), time.monotonic()
        threading.Event().wait(2.0)  # measuring idleness: nothing to wait for but time
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
        assert cpu / wall < 0.05, f"idle pool used {cpu / wall:.1%} CPU"
        latencies = []
        for _ in range(20):
            handle = noop.delay()
            handle.result(timeout=10)
            record = handle.record()
            latencies.append(record.started_ms - record.enqueued_ms)
        # Polling every idle_poll_seconds (0.5 s here) would give ~250 ms.
        assert statistics.median(latencies) <= 20, latencies
    finally:
        queue.stop_workers()


# -- cluster-ready keys -----------------------------------------------------------------------
def test_every_key_shares_one_hash_slot(queue, redis_client) -> None:
    @queue.task(max_retries=0)
    def fail():
        raise RuntimeError("x")

    @queue.task
    def ok():
        return 1

    with queue.running(workers=2):
        ok.delay().result(timeout=10)
        with pytest.raises(TaskFailed):
            fail.delay().result(timeout=10)
        ok.apply_async(delay=60)
        queue.pause("low")
    keys = [k.decode() for k in redis_client.keys("*")]
    assert len(keys) >= 6
    assert all(k.startswith("{taskqueue}:") for k in keys), keys
    assert len({key_slot(k.encode()) for k in keys}) == 1


def test_lua_scripts_touch_only_declared_keys() -> None:
    scripts = ROOT / "taskqueue" / "broker" / "scripts"
    for path in scripts.glob("*.lua"):
        source = path.read_text()
        if path.name != "_lib.lua":
            assert re.search(r"^-- KEYS\[1\]", source, re.M), f"{path.name} lacks its KEYS header"
        # every key argument is KEYS[...] or built from a KEYS prefix / a table of them
        for call in re.finditer(r"redis\.p?call\('(\w+)',\s*([^,)]+)", source):
            command, first = call.group(1), call.group(2).strip()
            if command in ("TIME",):
                continue
            assert not first.startswith(("'", '"')), f"{path.name}: literal key in {call.group(0)}"
    # and key names are spelled in one module only
    for path in (ROOT / "taskqueue").rglob("*.py"):
        if path.name != "keys.py":
            assert '"{" +' not in path.read_text() and "'{' +" not in path.read_text(), path


def test_a_pool_forgets_only_the_delivery_it_was_told_about(queue) -> None:
    """A task handed back (or retried) can be leased again by another thread of the same
    process before the first thread forgets it: forgetting the old delivery must not drop
    the new one, or the new attempt would wait for its lease to expire (seen as a stall
    of a few tasks in a 20,000-task benchmark)."""
    from taskqueue.broker import Delivery
    from taskqueue.worker import WorkerPool
    from taskqueue.worker.state import Attempt

    pool = WorkerPool(queue.broker, queue.registry, queue.settings, ["default"])
    old = Delivery("t1", b"", "", 1, "w:1:1", "default")
    new = Delivery("t1", b"", "", 1, "w:2:1", "default")
    pool._held.add(Attempt(new))
    pool._held.forget(old)
    assert pool._held.get("t1").delivery is new
    pool._held.forget(new)
    assert "t1" not in pool._held
