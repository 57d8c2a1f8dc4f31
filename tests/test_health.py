"""Health checks: each component says what is wrong; a Redis outage is a finding, not an error."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from taskqueue import TaskQueue
from taskqueue.health import ComponentStatus, HealthState, HealthStatus, health_check

COMPONENTS = ["redis", "workers", "scheduler", "autoscaler", "queues"]


def test_healthy_with_workers(queue: TaskQueue) -> None:
    queue.start_workers(2)
    health = queue.health_check(expected_workers=2)
    assert isinstance(health, HealthStatus)
    assert list(health.components) == COMPONENTS
    assert health.status == HealthState.HEALTHY and health.healthy, health
    assert health.message == "all components healthy"
    r = health.components["redis"]
    assert r.details["version"] and r.details["ping_ms"] >= 0
    assert r.details["maxmemory_policy"] and "used_memory" in r.details
    assert "ping" in r.message
    assert health.components["workers"].message == "1 process(es), 2 thread(s), 0 busy"
    assert health.components["scheduler"].message.startswith("not running")
    assert health.components["autoscaler"].message.startswith("not running")
    data = json.loads(json.dumps(health.to_dict()))
    assert data["status"] == "healthy" and data["components"]["redis"]["status"] == "healthy"
    assert "HealthStatus(healthy" in repr(health)


def test_no_worker_while_tasks_wait_is_unhealthy(queue: TaskQueue) -> None:
    @queue.task(name="h.t")
    def t() -> None:
        return None

    health = queue.health_check()
    assert health.status == "degraded"
    assert health.components["workers"].message == "no live worker: new tasks will wait until one starts"
    t.delay()
    t.delay()
    health = queue.health_check()
    assert health.status == HealthState.UNHEALTHY
    assert health.components["workers"].message == "no live worker while 2 task(s) are pending"
    assert health.message.startswith("workers: no live worker while 2 task(s) are pending")


def test_fewer_workers_than_expected_is_degraded(queue: TaskQueue) -> None:
    queue.start_workers(1)
    health = queue.health_check(expected_workers=3)
    assert health.status == HealthState.DEGRADED
    assert health.components["workers"].message.startswith("1 live worker thread(s), 3 expected")


def test_stale_heartbeat_of_this_process_is_unhealthy(
    queue: TaskQueue, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue.start_workers(1)
    assert queue.pool is not None

    refused = threading.Event()

    def cannot_write(*args: object, **kwargs: object) -> None:
        refused.set()
        raise redis.exceptions.ConnectionError("heartbeat refused")

    # The process can no longer publish itself (its heartbeat thread, and the worker
    # threads that publish the task set again when a fetch finds it gone)...
    monkeypatch.setattr(queue.pool._shared.link, "heartbeat", cannot_write)
    assert refused.wait(5)  # the heartbeat thread's next beat failed: none is in flight
    redis_client.zadd(queue.broker.keys.workers, {queue.pool.id: 0})  # ...and its entry expired
    health = queue.health_check()
    assert health.components["workers"].status == HealthState.UNHEALTHY
    assert "has no live heartbeat" in health.components["workers"].message


def test_old_pending_task_degrades_queues(queue: TaskQueue, redis_client: redis.Redis) -> None:
    @queue.task(name="h.old")
    def old() -> None:
        return None

    queue.start_workers(1, queues=["high"])  # nobody serves default and low
    queue.pause("low")
    ten_minutes_ago = int(time.time() * 1000) - 900_000
    for name in ("default", "low"):
        h = old.apply_async(queue=name)
        redis_client.hset(queue.broker.keys.task(h.id), "enqueued_ms", ten_minutes_ago)
    health = queue.health_check(max_pending_age=600)
    q = health.components["queues"]
    assert q.status == HealthState.DEGRADED
    assert q.message.startswith("oldest pending task waited longer than 600 s in: default (9")
    assert "low" not in q.message  # paused on purpose
    assert q.details["oldest_pending_age_seconds"]["low"] >= 900
    assert q.details["paused"] == ["low"]
    assert health.status == HealthState.DEGRADED
    assert "queues: oldest pending task" in health.message
    assert queue.health_check(max_pending_age=3600).components["queues"].status == HealthState.HEALTHY


def test_unserved_tasks_degrade_queues_and_say_what_to_do(make_queue, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(workers={"unknown_task_grace": 42})

    @queue.task(name="h.late")
    def late() -> None:
        return None

    h = late.delay()
    redis_client.hset(queue.broker.keys.task(h.id), "enqueued_ms", int(time.time() * 1000) - 900_000)
    # what a worker's fetch writes when no live worker serves a task's name
    redis_client.zadd(queue.broker.keys.unserved, {h.id: int(time.time() * 1000)})
    q = queue.health_check(max_pending_age=600).components["queues"]
    assert q.status == HealthState.DEGRADED and q.details["unserved_tasks"] == 1
    assert q.message.startswith("oldest pending task waited longer than 600 s in: default")
    assert q.message.endswith(
        "not serving these queues; 1 pending task(s) wait because no live worker serves their task "
        "name: start a worker that serves them, or they are dead-lettered as unknown-task after "
        "workers.unknown_task_grace (42 s)"
    )


def test_redis_down_is_reported_not_raised(make_queue, unused_port: int) -> None:  # type: ignore[no-untyped-def]
    q = make_queue(
        f"redis://127.0.0.1:{unused_port}/0",
        redis={"retry_attempts": 1, "connection_timeout": 0.5, "retry_max_seconds": 0.5},
    )
    started = time.monotonic()
    health = q.health_check()
    assert time.monotonic() - started < 5
    assert health.status == HealthState.UNHEALTHY
    assert health.components["redis"].message.startswith(
        f"cannot reach Redis at redis://127.0.0.1:{unused_port}"
    )
    assert health.components["workers"].message == "not checked: Redis is unreachable"
    assert health.message.startswith("redis: cannot reach Redis")


@pytest.fixture
def eviction_policy(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    try:
        before = redis_client.config_get("maxmemory*")
    except redis.exceptions.ResponseError:
        pytest.skip("the test server does not allow CONFIG")
    yield redis_client
    redis_client.config_set("maxmemory", before["maxmemory"])
    redis_client.config_set("maxmemory-policy", before["maxmemory-policy"])


def test_eviction_policy_warning(queue: TaskQueue, eviction_policy: redis.Redis) -> None:
    queue.start_workers(1)
    eviction_policy.config_set("maxmemory-policy", "allkeys-lru")
    health = queue.health_check()
    assert health.components["redis"].status == HealthState.HEALTHY  # no limit: nothing is evicted
    assert "harmless while maxmemory is 0" in health.components["redis"].details["warning"]
    eviction_policy.config_set("maxmemory", "1gb")
    health = queue.health_check()
    r = health.components["redis"]
    assert r.status == HealthState.DEGRADED
    assert r.message.startswith("maxmemory-policy is allkeys-lru: when memory is full Redis may evict")
    assert "set maxmemory-policy noeviction" in r.message
    eviction_policy.config_set("maxmemory-policy", "noeviction")
    assert queue.health_check().components["redis"].status == HealthState.HEALTHY


def test_memory_backend(any_queue: TaskQueue) -> None:
    any_queue.start_workers(1)
    health = any_queue.health_check()
    assert health.status == HealthState.HEALTHY, health
    if any_queue.url.startswith("memory://"):
        assert "does not answer INFO" in health.components["redis"].details["note"]


class FakeScheduler:
    def __init__(self, running: bool) -> None:
        self.running = running

    def stop(self) -> None:
        self.running = False


class ReportingScheduler:
    def health(self) -> ComponentStatus:
        return ComponentStatus(HealthState.DEGRADED, "3 periodic tasks are late", {"late": 3})

    def stop(self) -> None:
        pass


def test_scheduler_component_reads_the_service(queue: TaskQueue) -> None:
    queue.start_workers(1)

    def check(scheduler: object) -> HealthStatus:
        return health_check(queue.broker, queue.settings, pool=queue.pool, scheduler=scheduler)

    assert check(FakeScheduler(running=True)).components["scheduler"].message == "running"
    health = check(FakeScheduler(running=False))
    assert health.components["scheduler"].status == HealthState.UNHEALTHY
    assert health.message == "scheduler: the scheduler was started but is not running"
    s = check(ReportingScheduler()).components["scheduler"]
    assert (s.status, s.message) == (HealthState.DEGRADED, "3 periodic tasks are late")
    assert s.details == {"late": 3}


def test_the_queue_hands_its_running_scheduler_to_the_check(queue: TaskQueue) -> None:
    assert queue.health_check().components["scheduler"].details == {"running": False}
    queue.start_scheduler()
    s = queue.health_check().components["scheduler"]
    assert (s.status, s.message, s.details) == (HealthState.HEALTHY, "running", {"running": True}), s


def test_autoscaler_component(queue: TaskQueue) -> None:
    release = threading.Event()

    @queue.task(name="h.busy")
    def busy() -> None:
        release.wait(20)

    at_max = threading.Event()
    scaler = queue.start_autoscaler(
        1,
        2,
        tick_interval=0.05,
        cooldown_seconds=0,
        consecutive_signals=1,
        scale_up_threshold=1.5,
        on_decision=lambda d: d.to_workers == 2 and at_max.set(),
    )
    try:
        a = queue.health_check().components["autoscaler"]
        assert a.status == HealthState.HEALTHY and a.message.startswith("running: 1 threads within 1..2")
        for _ in range(10):
            busy.delay()
        assert at_max.wait(10)
        assert scaler.last_load is not None and scaler.last_load > 1.5
        a = queue.health_check().components["autoscaler"]
        assert a.status == HealthState.DEGRADED
        assert a.message.startswith("at max_workers=2 with")
    finally:
        release.set()
    queue.stop_autoscaler()
    assert queue.health_check().components["autoscaler"].message.startswith("not running")


def test_argument_errors(queue: TaskQueue) -> None:
    with pytest.raises(ValueError, match="expected_workers must be an int >= 0 or None, got '2'"):
        queue.health_check(expected_workers="2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pending_age must be a number >= 0, got -1"):
        queue.health_check(max_pending_age=-1)


class _Restarted:
    """The report of an embedded server restarted ``ago`` seconds back (taskqueue.embedded)."""

    def __init__(self, ago: float) -> None:
        now = time.time()
        self.state = {
            "data_dir": "/data",
            "log": "/data/server.log",
            "pid": 42,
            "restarts": 2,
            "first_started_at": now - 3600,
            "last_exit": "killed by SIGKILL",
            "last_exit_noticed_at": now - ago - 0.05,
            "last_restart_at": now - ago,
        }

    def report(self) -> dict[str, object]:
        return dict(self.state)


@pytest.mark.parametrize(("ago", "status"), [(5.0, "degraded"), (3600.0, "healthy")])
def test_a_restart_of_the_embedded_server_is_reported_and_degrades_for_a_while(
    queue: TaskQueue, monkeypatch: pytest.MonkeyPatch, ago: float, status: str
) -> None:
    """Degraded while the restart is recent (someone should read why the server died),
    then only mentioned; the figures stay in the details either way."""
    from taskqueue import embedded

    monkeypatch.setattr(embedded, "server_for", lambda url: _Restarted(ago) if url == queue.url else None)
    component = queue.health_check().components["redis"]
    assert component.status == status, component
    assert "killed by SIGKILL) and was restarted at" in component.message
    assert "(pid 42, down 0.05 s); 2 restart(s) since" in component.message
    assert component.message.endswith("see /data/server.log")
    assert component.details["embedded"]["restarts"] == 2 and component.details["ping_ms"] >= 0
