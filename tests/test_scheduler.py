"""The scheduler: delayed tasks, periodic tasks, and the guarantees of issue 4.

Most tests drive ``Scheduler.tick(now)`` with an injected clock; the thread
and the three-process duplicate test run against the real server.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from taskqueue import (
    BrokerError,
    ConfigurationError,
    PeriodicTask,
    Scheduler,
    SerializationError,
    Task,
    TaskQueue,
    TaskRegistry,
    TaskStatus,
)
from taskqueue.broker import CLAIM_LOST, PeriodicClaim
from taskqueue.periodic import Cron, Every
from taskqueue.serialization import decode

from .brokerkit import queue_ids
from .conftest import make_settings, wait_until

T0 = datetime(2024, 7, 1, 6, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@pytest.fixture
def other_queue(redis_client: redis.Redis, redis_url: str) -> Iterator[Callable[..., TaskQueue]]:
    """Queues with their own registry, like the same code in other processes."""
    made: list[TaskQueue] = []

    def make(**overrides: Any) -> TaskQueue:
        made.append(TaskQueue(redis_url, settings=make_settings(**overrides), registry=TaskRegistry()))
        return made[-1]

    yield make
    for q in made:
        q.close()


def queued_ids(q: TaskQueue, queue: str = "default") -> list[str]:
    return queue_ids(q.broker, queue)


# -- delayed tasks ------------------------------------------------------------------------


def test_delayed_task_is_scheduled_until_due_then_promoted(any_queue: TaskQueue) -> None:
    q = any_queue
    add = q.task(lambda x, y: x + y, name="add")
    h = add.apply_async(args=(1, 2), eta=at(60))
    assert h.status == TaskStatus.SCHEDULED
    assert h.record().due_ms == ms(at(60))

    early = q.scheduler.tick(now=at(59.999))
    assert early.promoted == 0 and h.status == TaskStatus.SCHEDULED
    assert early.next_due_ms == ms(at(60))

    due = q.scheduler.tick(now=at(60))
    assert due.promoted == 1
    assert h.status == TaskStatus.PENDING
    assert queued_ids(q) == [h.id]
    assert q.scheduler.tick(now=at(61)).promoted == 0  # moved once, not again


def test_schedule_with_delay_uses_server_clock(queue: TaskQueue) -> None:
    noop = queue.task(lambda: None, name="noop")
    server_before = queue.broker.client.time()
    h = queue.schedule(noop.s(), delay=timedelta(minutes=5))
    due = h.record().due_ms
    assert due is not None
    expected = server_before[0] * 1000 + server_before[1] // 1000 + 300_000
    assert expected <= due < expected + 5_000
    assert queue.scheduler.tick().promoted == 0  # due in 5 minutes, by the server clock
    assert queue.scheduler.tick(now=due / 1000).promoted == 1


def test_naive_eta_is_rejected_and_nothing_is_written(queue: TaskQueue, redis_client: redis.Redis) -> None:
    noop = queue.task(lambda: None, name="noop")
    naive = datetime.now() + timedelta(minutes=5)
    with pytest.raises(ValueError, match="no timezone"):
        queue.schedule(noop.s(), eta=naive)
    with pytest.raises(ValueError, match="no timezone"):
        noop.apply_async(eta=naive)
    assert redis_client.zcard(queue.broker.keys.scheduled) == 0
    assert queue.pending()["default"] == 0


def test_schedule_needs_delay_or_eta(queue: TaskQueue) -> None:
    noop = queue.task(lambda: None, name="noop")
    with pytest.raises(ValueError, match="delay= or eta="):
        queue.schedule(noop.s())
    with pytest.raises(ValueError, match="delay or eta, not both"):
        queue.schedule(noop.s(), delay=1, eta=at(1))


def test_cancelled_scheduled_task_never_runs(any_queue: TaskQueue) -> None:
    q = any_queue
    noop = q.task(lambda: None, name="noop")
    h = noop.apply_async(eta=at(10))
    assert h.cancel() is True
    assert h.status == TaskStatus.CANCELLED
    assert q.scheduler.tick(now=at(3600)).promoted == 0
    assert queued_ids(q) == []


def test_promotion_is_bounded_per_tick_and_oldest_first(make_queue) -> None:
    q = make_queue(scheduler={"max_tasks_per_tick": 5})
    noop = q.task(lambda: None, name="noop")
    # Enqueued in reverse order of due time: promotion must follow due time, not insertion.
    handles = [noop.apply_async(eta=at(100 - i)) for i in range(12)]
    by_due = [h.id for h in reversed(handles)]

    first = q.scheduler.tick(now=at(1000))
    assert first.promoted == 5
    assert queued_ids(q) == by_due[:5]
    assert first.next_due_ms <= first.now_ms  # a backlog remains: tick again at once
    assert first.sleep_seconds(q.scheduler.tick_interval) == 0

    assert q.scheduler.tick(now=at(1000)).promoted == 5
    last = q.scheduler.tick(now=at(1000))
    assert last.promoted == 2 and last.next_due_ms == -1
    assert queued_ids(q) == by_due


def test_sleep_is_until_next_due_or_one_tick() -> None:
    from taskqueue import TickResult

    assert TickResult(now_ms=1000, promoted=0, next_due_ms=1300).sleep_seconds(1.0) == pytest.approx(0.301)
    assert TickResult(now_ms=1000, promoted=0, next_due_ms=60_000).sleep_seconds(1.0) == 1.0
    assert TickResult(now_ms=1000, promoted=0, next_due_ms=-1).sleep_seconds(2.5) == 2.5


def test_scheduler_thread_promotes_at_due_time_with_no_idle_worker(make_queue) -> None:
    """No worker fetches, so only the scheduler can move the task; its tick is 30 s,
    so the task moves on time only if the thread sleeps until the due time."""
    q = make_queue(scheduler={"tick_interval": 30.0})
    noop = q.task(lambda: None, name="noop")
    h = noop.apply_async(delay=0.5)
    q.start_scheduler()
    wait_until(lambda: h.status == TaskStatus.PENDING, timeout=5)
    assert queued_ids(q) == [h.id]


def test_task_scheduled_after_the_scheduler_slept_wakes_it(make_queue) -> None:
    """The scheduler planned a 30 s sleep; a task this process schedules for 0.3 s
    from now must not wait for it (no worker runs, so only the scheduler promotes)."""
    q = make_queue(scheduler={"tick_interval": 30.0})
    noop = q.task(lambda: None, name="noop")
    q.start_scheduler()
    wait_until(lambda: q.scheduler.stats["ticks"] >= 1)
    h = noop.apply_async(delay=0.3)
    wait_until(lambda: h.status == TaskStatus.PENDING, timeout=5)
    later = noop.apply_async(eta=datetime.now(UTC) + timedelta(seconds=0.3))
    wait_until(lambda: later.status == TaskStatus.PENDING, timeout=5)


def test_scheduler_survives_losing_a_tick_and_state_stays_in_redis(make_queue) -> None:
    """A scheduler that stops between ticks loses nothing: a new one carries on."""
    q = make_queue()
    noop = q.task(lambda: None, name="noop")
    handles = [noop.apply_async(eta=at(i)) for i in range(1, 4)]
    first = make_queue()  # a scheduler that ticks once, then goes away
    assert first.scheduler.tick(now=at(1)).promoted == 1
    first.close()
    second = make_queue()
    assert second.scheduler.tick(now=at(10)).promoted == 2
    assert queued_ids(q) == [h.id for h in handles]


# -- periodic tasks: schedules ------------------------------------------------------------


def test_every_runs_each_slot_once_on_a_fixed_grid(any_queue: TaskQueue) -> None:
    q = any_queue

    @q.periodic(every=timedelta(seconds=10), args=(2,), kwargs={"y": 3})
    @q.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    s = q.scheduler
    s.sync(now=T0)
    assert s.tick(now=at(9.999)).enqueued == []
    first = s.tick(now=at(10))
    assert first.enqueued == [f"periodic:add:{ms(at(10))}"]
    assert first.next_due_ms == ms(at(20))
    assert s.tick(now=at(10)).enqueued == []  # the same slot never twice
    # Late by 3 s: the next slot stays on the grid (no drift).
    late = s.tick(now=at(23))
    assert late.enqueued == [f"periodic:add:{ms(at(20))}"]
    assert late.next_due_ms == ms(at(30))

    record = q.get(first.enqueued[0]).record()
    assert record.status == "PENDING" and record.name == "add" and record.queue == "default"
    envelope = decode(record.payload)
    assert envelope.args == (2,) and envelope.kwargs == {"y": 3}
    assert queued_ids(q) == first.enqueued + late.enqueued


def test_periodic_run_is_executed_by_a_worker(queue: TaskQueue) -> None:
    done = threading.Event()
    seen = []

    @queue.periodic(every=0.2, args=("hello",), name="greet")
    def greet(word: str) -> None:
        seen.append(word)
        done.set()

    queue.start_scheduler()
    queue.start_workers(1)
    assert done.wait(10)
    assert seen[0] == "hello"


def test_missed_runs_after_downtime_run_once_by_default(queue: TaskQueue) -> None:
    @queue.periodic(every=60, name="report")
    def report() -> None: ...

    s = queue.scheduler
    s.sync(now=T0)
    # Down for ~10 slots: one run, not ten; then back on the grid after "now".
    result = s.tick(now=at(60 * 10 + 25))
    assert result.enqueued == [f"periodic:report:{ms(at(60))}"]
    assert result.next_due_ms == ms(at(60 * 11))
    assert s.tick(now=at(60 * 10 + 30)).enqueued == []
    (info,) = queue.periodic_tasks()
    assert info.runs == 1 and info.last_run == at(60) and info.next_run == at(660)


def test_missed_runs_can_be_skipped(queue: TaskQueue) -> None:
    @queue.periodic(every=60, name="ping", missed="skip")
    def ping() -> None: ...

    s = queue.scheduler
    s.sync(now=T0)
    late = s.tick(now=at(60 * 5 + 40))  # 4:40 late: more than half the interval
    assert late.enqueued == [] and late.skipped == ["ping"]
    assert late.next_due_ms == ms(at(360))
    on_time = s.tick(now=at(360.2))
    assert on_time.enqueued == [f"periodic:ping:{ms(at(360))}"]
    (info,) = queue.periodic_tasks()
    assert (info.runs, info.skipped, info.last_skipped) == (1, 1, at(60))


def test_skip_grace_is_configurable(queue: TaskQueue) -> None:
    @queue.periodic(every=3600, name="hourly", missed="skip", grace=timedelta(minutes=10))
    def hourly() -> None: ...

    s = queue.scheduler
    s.sync(now=T0)
    assert s.tick(now=at(3600 + 9 * 60)).enqueued == [f"periodic:hourly:{ms(at(3600))}"]
    assert s.tick(now=at(7200 + 11 * 60)).skipped == ["hourly"]


def test_cron_in_a_time_zone(queue: TaskQueue) -> None:
    @queue.periodic(cron="0 9 * * *", tz="Europe/Paris", name="paris-morning")
    def morning() -> None: ...

    s = queue.scheduler
    s.sync(now=T0)  # 2024-07-01 06:00 UTC = 08:00 in Paris (summer time, UTC+2)
    (info,) = queue.periodic_tasks()
    assert info.next_run == datetime(2024, 7, 1, 7, 0, tzinfo=UTC)
    assert info.schedule == "cron '0 9 * * *' Europe/Paris"
    assert s.tick(now=datetime(2024, 7, 1, 6, 59, 59, tzinfo=UTC)).enqueued == []
    assert len(s.tick(now=datetime(2024, 7, 1, 7, 0, tzinfo=UTC)).enqueued) == 1
    # Winter time (UTC+1): 09:00 in Paris is 08:00 UTC.
    winter = Cron("0 9 * * *", "Europe/Paris")
    jan = ms(datetime(2024, 1, 15, 12, 0, tzinfo=UTC))
    assert winter.next_run(jan, jan) == ms(datetime(2024, 1, 16, 8, 0, tzinfo=UTC))


def test_cron_runs_once_when_clocks_go_back() -> None:
    nightly = Cron("30 2 * * *", "Europe/Paris")
    # 2024-10-27: 02:30 happens twice in Paris (CEST then CET). One run, like cron.
    first = ms(datetime(2024, 10, 27, 0, 30, tzinfo=UTC))  # 02:30 CEST
    assert nightly.next_run(first, first + 1000) == ms(datetime(2024, 10, 28, 1, 30, tzinfo=UTC))
    # An every-five-minutes cron keeps running through the repeated hour.
    often = Cron("*/5 * * * *", "Europe/Paris")
    before = ms(datetime(2024, 10, 27, 0, 55, tzinfo=UTC))  # 02:55 CEST
    assert often.next_run(before, before) == ms(datetime(2024, 10, 27, 1, 0, tzinfo=UTC))


def test_every_schedule_arithmetic() -> None:
    e = Every(1000)
    assert e.first_run(5_000) == 6_000
    assert e.next_run(6_000, 6_001) == 7_000
    assert e.next_run(6_000, 9_999) == 10_000  # run once, next slot after now, on the grid
    assert e.next_run(6_000, 10_000) == 11_000


# -- periodic tasks: declaration ----------------------------------------------------------


def test_periodic_returns_the_task_function_and_registers_it(queue: TaskQueue) -> None:
    @queue.periodic(every=timedelta(minutes=5), queue="low", name="cleanup")
    def cleanup(days: int = 7) -> int:
        return days

    assert cleanup.name == "cleanup" and "cleanup" in queue.registry
    assert cleanup(3) == 3  # still callable locally
    assert queue.periodic_definitions()["cleanup"].queue == "low"
    h = cleanup.delay(1)  # and usable as a normal task
    assert h.status == TaskStatus.PENDING


def test_stacked_periodic_entries_need_distinct_names(queue: TaskQueue) -> None:
    @queue.periodic(cron="0 * * * *", args=("hourly",), name="report-hourly")
    @queue.periodic(cron="0 0 * * *", args=("daily",), name="report-daily")
    @queue.task(name="report")
    def report(kind: str) -> str:
        return kind

    assert set(queue.periodic_definitions()) == {"report-hourly", "report-daily"}
    with pytest.raises(ValueError, match="already used"):
        queue.periodic(every=60, args=("again",))(queue.periodic(every=60, args=("x",))(report))


def test_periodic_task_class(queue: TaskQueue, registry: TaskRegistry) -> None:
    class Digest(Task, registry=registry):
        name = "digest"
        to: str

        def execute(self) -> str:
            return self.to

    queue.periodic(every=30, kwargs={"to": "team@example.com"})(Digest)
    queue.scheduler.sync(now=T0)
    (task_id,) = queue.scheduler.tick(now=at(30)).enqueued
    assert decode(queue.get(task_id).record().payload).kwargs == {"to": "team@example.com"}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "exactly one of every="),
        ({"every": 60, "cron": "* * * * *"}, ValueError, "exactly one of every="),
        ({"every": "5 minutes"}, TypeError, "timedelta or a number of seconds"),
        ({"every": 0}, ValueError, "at least 1 ms"),
        ({"cron": "every monday"}, ValueError, "not a valid cron expression"),
        ({"cron": "0 9 * * *", "tz": "Mars/Olympus"}, ValueError, "not a known time zone"),
        ({"every": 60, "tz": "Europe/Paris"}, ValueError, "cron= schedules only"),
        ({"every": 60, "missed": "catch_up"}, ValueError, "missed='catch_up'"),
        ({"every": 60, "queue": "nope"}, ConfigurationError, "unknown queue 'nope'"),
        ({"every": 60, "args": 5}, TypeError, "args must be a tuple or list"),
        ({"every": 60, "name": "has space"}, ValueError, "periodic task name"),
    ],
)
def test_periodic_rejects_bad_arguments(queue: TaskQueue, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        queue.periodic(**kwargs)(lambda: None)
    assert queue.periodic_definitions() == {}


def test_periodic_checks_arguments_and_payload_at_declaration(queue: TaskQueue) -> None:
    def two(a: int, b: int) -> None: ...

    with pytest.raises(TypeError, match="missing a required argument"):
        queue.periodic(every=60, args=(1,))(two)
    with pytest.raises(SerializationError, match="cannot be serialized"):
        queue.periodic(every=60, args=(1, object()), name="bad")(two)


# -- registration in Redis ----------------------------------------------------------------


def test_definitions_are_registered_and_stale_ones_removed(other_queue, redis_client: redis.Redis) -> None:
    old = other_queue()
    for name in ("keep", "gone", "changed"):
        old.periodic(every=timedelta(hours=1), name=name)(lambda: None)
    old.start_scheduler()  # registers them; first runs in an hour (server clock)
    old.stop_scheduler()
    first_run = {p.name: p.next_run for p in old.periodic_tasks()}
    assert set(first_run) == {"keep", "gone", "changed"}
    old.scheduler.tick(now=first_run["keep"])  # each ran once
    assert {p.name: p.runs for p in old.periodic_tasks()} == {"keep": 1, "gone": 1, "changed": 1}

    # New code: "gone" was deleted, "changed" has a new schedule.
    new = other_queue()
    new.periodic(every=timedelta(hours=1), name="keep")(lambda: None)
    new.periodic(every=timedelta(hours=3), name="changed")(lambda: None)
    new.start_scheduler()
    tasks = {p.name: p for p in new.periodic_tasks()}
    assert set(tasks) == {"keep", "changed"}
    assert set(redis_client.hkeys(new.broker.keys.periodic)) == {b"keep", b"changed"}
    assert redis_client.zscore(new.broker.keys.periodic_due, "gone") is None
    # Same schedule: the stored next run and history are kept across the restart.
    keep = tasks["keep"]
    assert keep.next_run == first_run["keep"] + timedelta(hours=1) and keep.runs == 1
    assert keep.last_task_id == f"periodic:keep:{ms(first_run['keep'])}"
    # Changed schedule: it starts again from its first slot after now (server clock).
    changed = tasks["changed"]
    assert changed.schedule == "every 3 h"
    assert changed.next_run is not None and changed.next_run > first_run["changed"] + timedelta(hours=1)


def test_periodic_tasks_shows_unregistered_definitions(queue: TaskQueue) -> None:
    queue.periodic(every=timedelta(hours=1), name="hourly")(lambda: None)
    (info,) = queue.periodic_tasks()
    assert isinstance(info, PeriodicTask)
    assert (info.name, info.registered, info.defined_here, info.next_run) == ("hourly", False, True, None)
    assert info.schedule == "every 1 h"
    queue.start_scheduler()
    (info,) = queue.periodic_tasks()
    assert info.registered and info.next_run is not None


def test_definition_added_while_scheduler_runs_is_registered(queue: TaskQueue) -> None:
    queue.start_scheduler()
    queue.periodic(every=60, name="late")(lambda: None)
    assert [p.name for p in queue.periodic_tasks() if p.registered] == ["late"]


def test_stored_document_carries_schedule_and_runs(queue: TaskQueue, redis_client: redis.Redis) -> None:
    queue.periodic(cron="*/5 * * * *", tz="Europe/Paris", args=(1,), name="five")(lambda n: n)
    queue.scheduler.sync(now=T0)
    queue.scheduler.tick(now=at(300))
    doc = json.loads(redis_client.hget(queue.broker.keys.periodic, "five"))
    assert doc["schedule"] == {"cron": "*/5 * * * *", "tz": "Europe/Paris"}
    assert doc["next_run_ms"] == ms(at(600)) and doc["last_run_ms"] == ms(at(300))
    assert doc["args"] == [1] and doc["runs"] == 1


# -- no duplicates, and the server clock --------------------------------------------------


def test_a_claim_on_a_stale_slot_loses(queue: TaskQueue) -> None:
    """The compare-and-set itself: a second scheduler that saw the same slot gets nothing."""
    queue.periodic(every=10, name="beat")(lambda: None)
    s = queue.scheduler
    s.sync(now=T0)
    assert len(s.tick(now=at(10)).enqueued) == 1
    definition = queue.periodic_definitions()["beat"]
    stale = PeriodicClaim(
        name="beat",
        slot_ms=ms(at(10)),
        next_ms=ms(at(20)),
        document="{}",
        run=True,
        task_id="periodic:beat:other",
        task_name=definition.task_name,
        queue="default",
        payload=definition.payload,
        signature="",
        max_retries=0,
    )
    assert queue.broker.claim_periodic([stale], ms(at(10))) == [(CLAIM_LOST, ms(at(20)))]
    assert len(queued_ids(queue)) == 1


def test_two_schedulers_in_one_process_share_slots(other_queue) -> None:
    a, b = other_queue(), other_queue()
    for q in (a, b):
        q.periodic(every=10, name="beat")(lambda: None)
    a.scheduler.sync(now=T0)
    b.scheduler.sync(now=T0)
    runs = []
    for step in range(1, 21):
        for q in (a, b) if step % 2 else (b, a):
            runs += q.scheduler.tick(now=at(step * 10)).enqueued
    assert len(runs) == len(set(runs)) == 20
    # The second scheduler of each step saw the slot already advanced and did not even try.
    assert a.scheduler.stats["lost_race"] == b.scheduler.stats["lost_race"] == 0


@pytest.mark.parametrize("skew_hours", [+1, -1])
def test_local_clock_skew_changes_nothing(
    queue: TaskQueue, monkeypatch: pytest.MonkeyPatch, skew_hours: int
) -> None:
    noop = queue.task(lambda: None, name="noop")
    queue.periodic(every=60, name="minutely")(lambda: None)
    h = noop.apply_async(delay=60)
    queue.start_scheduler()
    queue.stop_scheduler()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew_hours * 3600)
    result = queue.scheduler.tick()
    assert result.promoted == 0 and result.enqueued == []
    assert h.status == TaskStatus.SCHEDULED
    assert 55_000 < result.next_due_ms - result.now_ms <= 60_000


def test_tick_rejects_a_naive_clock(queue: TaskQueue) -> None:
    with pytest.raises(ValueError, match="no timezone"):
        queue.scheduler.tick(now=datetime(2024, 1, 1))


def test_three_scheduler_processes_never_duplicate(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Three real scheduler processes, one killed midway: every periodic slot is enqueued
    exactly once (no duplicate, no gap) and every delayed task exactly once."""
    namespace, every, entries = "dup", 0.5, 3
    settings = make_settings(redis={"namespace": namespace})
    q = TaskQueue(redis_url, settings=settings, registry=TaskRegistry())
    noop = q.task(lambda: None, name="noop")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parent.parent), env.get("PYTHONPATH")])
    )
    script = Path(__file__).with_name("scheduler_process.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), redis_url, namespace, str(every), str(entries), "0.01"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        delayed = [noop.apply_async(delay=0.05 * (i % 60)) for i in range(150)]

        def runs() -> Counter[str]:
            return Counter(i.rsplit(":", 1)[0] for i in queued_ids(q) if i.startswith("periodic:"))

        wait_until(lambda: min(runs().values(), default=0) >= 3, timeout=15)
        procs[0].send_signal(signal.SIGKILL)  # dies between (or inside) ticks: nothing is lost
        procs[0].wait(5)
        wait_until(lambda: min(runs().values(), default=0) >= 9, timeout=20)
        stats = []
        for p in procs[1:]:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("stop\n")
            p.stdin.flush()
            stats.append(json.loads(p.stdout.readline()))
            assert p.wait(10) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)

    ids = queued_ids(q)
    assert len(ids) == len(set(ids)), "a task was enqueued twice"
    # Delayed tasks: all moved, each exactly once.
    assert redis_client.zcard(q.broker.keys.scheduled) == 0
    assert {h.id for h in delayed} <= set(ids)
    assert all(r is not None and r.status == "PENDING" for r in q.broker.get_tasks([h.id for h in delayed]))
    # Periodic: per entry, consecutive slots on the grid, none twice, none missing.
    slots: dict[str, list[int]] = {}
    for task_id in ids:
        if task_id.startswith("periodic:"):
            _, name, slot = task_id.split(":")
            slots.setdefault(name, []).append(int(slot))
    assert set(slots) == {f"beat-{i}" for i in range(entries)}
    total = 0
    for name, found in slots.items():
        found.sort()
        gaps = {b - a for a, b in itertools.pairwise(found)}
        assert gaps == {int(every * 1000)}, f"{name}: slots not consecutive: {found}"
        total += len(found)
        doc = json.loads(redis_client.hget(q.broker.keys.periodic, name))
        assert doc["runs"] == len(found)  # every successful claim enqueued a new slot
    assert total >= 20
    # The processes did contend (10 ms ticks): some lost a race, none claimed a slot twice.
    assert all(s["already_exists"] == 0 for s in stats), stats
    assert sum(s["lost_race"] for s in stats) > 0, f"the schedulers never contended: {stats}"
    q.close()


# -- lifecycle and errors -----------------------------------------------------------------


def test_start_and_stop_scheduler_and_close(make_queue) -> None:
    q = make_queue()
    scheduler = q.start_scheduler()
    assert q.services.get(Scheduler) is scheduler and scheduler.running
    assert q.start_scheduler() is scheduler  # idempotent
    q.stop_scheduler()
    assert not scheduler.running
    q.start_scheduler()
    q.close()
    assert not scheduler.running


def test_scheduler_enabled_setting_starts_it_with_workers(make_queue) -> None:
    q = make_queue(scheduler={"enabled": True})
    q.start_workers(1)
    assert q.scheduler.running


def test_bad_scheduler_settings_are_named(make_queue) -> None:
    with pytest.raises(ConfigurationError, match=r"scheduler\.tick_interval = 0\.0"):
        make_queue(scheduler={"tick_interval": 0}).start_scheduler()
    with pytest.raises(ConfigurationError, match=r"scheduler\.max_tasks_per_tick = 0"):
        make_queue(scheduler={"max_tasks_per_tick": 0}).start_scheduler()


@pytest.mark.slow
def test_scheduler_resumes_after_a_redis_outage(tmp_path: Path, registry: TaskRegistry) -> None:
    """Its own server (persistent), stopped and restarted under a running scheduler."""
    from taskqueue.embedded import EmbeddedServer

    server = EmbeddedServer(tmp_path / "outage", persistent=True)
    server.start()
    q = TaskQueue(server.url, settings=make_settings(), registry=registry)
    try:
        noop = q.task(lambda: None, name="noop")
        q.start_scheduler()
        h = noop.apply_async(delay=1.0)
        server.stop()  # SIGTERM: the server writes its data, including the scheduled task
        wait_until(lambda: q.scheduler._outage_since is not None, timeout=10)
        server.start()
        wait_until(lambda: h.status == TaskStatus.PENDING, timeout=15)
        assert q.scheduler._outage_since is None
    finally:
        q.close()
        server.stop()


def test_start_scheduler_without_redis_says_so(registry: TaskRegistry) -> None:
    settings = make_settings(redis={"retry_attempts": 1, "connection_timeout": 0.5})
    q = TaskQueue("redis://127.0.0.1:1/0", settings=settings, registry=registry)
    try:
        with pytest.raises(BrokerError, match="cannot reach Redis while registering periodic tasks"):
            q.start_scheduler()
        with pytest.raises(BrokerError, match="cannot reach Redis while running a scheduler tick"):
            q.scheduler.tick()
        with pytest.raises(BrokerError, match="cannot reach Redis while reading periodic tasks"):
            q.periodic_tasks()
    finally:
        q.close()


def test_a_paused_periodic_task_skips_its_slots_and_resumes_at_the_next(any_queue: TaskQueue) -> None:
    queue = any_queue

    @queue.periodic(every=60, name="report")
    def report() -> None: ...

    s = queue.scheduler
    s.sync(now=T0)
    assert s.tick(now=at(60)).enqueued == [f"periodic:report:{ms(at(60))}"]
    queue.pause_periodic("report")
    (info,) = queue.periodic_tasks()
    assert info.paused
    for slot in (120, 180):  # claimed and advanced, recorded as skipped, never enqueued
        tick = s.tick(now=at(slot))
        assert (tick.enqueued, tick.paused, tick.next_due_ms) == ([], ["report"], ms(at(slot + 60)))
    assert queue.pending("default") == {"default": 1}  # only the run before the pause
    (info,) = queue.periodic_tasks()
    assert (info.runs, info.skipped, info.last_skipped, info.next_run) == (1, 2, at(180), at(240))
    queue.resume_periodic("report")
    # resumed some time after a slot passed (missed="run_once"): the slot due now runs, once
    assert s.tick(now=at(250)).enqueued == [f"periodic:report:{ms(at(240))}"]
    (info,) = queue.periodic_tasks()
    assert (info.paused, info.runs, info.skipped) == (False, 2, 2)
    assert s.stats["paused"] == 2


def test_pausing_an_unknown_periodic_task_says_what_to_do(queue: TaskQueue) -> None:
    with pytest.raises(
        ValueError, match=r"no periodic task 'nope' is registered in Redis; q.periodic_tasks\(\)"
    ):
        queue.pause_periodic("nope")
    with pytest.raises(ValueError, match="no periodic task 'nope' is registered"):
        queue.resume_periodic("nope")
    with pytest.raises(TypeError, match="name must be a periodic task's name"):
        queue.pause_periodic(None)  # type: ignore[arg-type]
