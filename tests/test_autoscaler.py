"""The autoscaler: decision steps with an injected clock and fake load, and real runs."""

from __future__ import annotations

import logging
import queue as stdlib_queue
import threading
from collections.abc import Callable

import pytest

from taskqueue import ConfigurationError, Task, TaskQueue, TaskRegistry
from taskqueue.autoscaler import Autoscaler, ScalingDecision
from taskqueue.config import AutoscalerSettings


def settings(**changes: object) -> AutoscalerSettings:
    base = {
        "min_workers": 1,
        "max_workers": 5,
        "scale_up_threshold": 5.0,
        "scale_down_threshold": 1.0,
        "scale_up_count": 2,
        "scale_down_count": 1,
        "cooldown_seconds": 10.0,
        "consecutive_signals": 2,
        "tick_interval": 1.0,
    }
    base.update(changes)
    return AutoscalerSettings(**base)  # type: ignore[arg-type]


def scaler_for(q: TaskQueue, config: AutoscalerSettings) -> Autoscaler:
    """An autoscaler on the queue's Inspection port and its (current) pool, as start_autoscaler builds."""
    return Autoscaler(q.broker, lambda: q.pool, config)


@pytest.fixture
def pool_queue(queue: TaskQueue) -> TaskQueue:
    queue.start_workers(1)
    return queue


# -- decision steps (injected clock, fake load) --------------------------------------------------
def test_needs_consecutive_signals_then_scales_by_the_count(pool_queue: TaskQueue) -> None:
    scaler = scaler_for(pool_queue, settings())
    assert scaler.tick(now=0, load=9) is None  # one signal is not enough
    decision = scaler.tick(now=1, load=9)
    assert decision is not None
    assert (decision.from_workers, decision.to_workers, decision.direction) == (1, 3, "up")
    assert "scale_up_threshold 5 for 2 ticks" in decision.reason
    assert pool_queue.worker_count() == 3


def test_cooldown_holds_changes_back(pool_queue: TaskQueue) -> None:
    scaler = scaler_for(pool_queue, settings())
    scaler.tick(now=0, load=9)
    assert scaler.tick(now=1, load=9) is not None  # 1 -> 3
    for t in range(2, 11):
        assert scaler.tick(now=t, load=9) is None, f"changed during the cooldown at t={t}"
    assert pool_queue.worker_count() == 3
    decision = scaler.tick(now=11, load=9)
    assert decision is not None and decision.to_workers == 5
    # at max_workers: no further signal
    assert scaler.tick(now=30, load=50) is None and scaler.tick(now=31, load=50) is None
    assert pool_queue.worker_count() == 5


def test_scales_down_to_min_and_no_further(pool_queue: TaskQueue) -> None:
    pool_queue.scale_workers(4)
    scaler = scaler_for(pool_queue, settings(cooldown_seconds=0))
    counts = []
    for t in range(12):
        scaler.tick(now=t, load=0.0)
        counts.append(pool_queue.worker_count())
    assert counts == [4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1]
    assert [d.direction for d in scaler.decisions] == ["down"] * 3


@pytest.mark.parametrize(
    "loads",
    [
        [6, 4] * 10,  # around the scale-up threshold
        [0.5, 1.5] * 10,  # around the scale-down threshold
        [9, 0, 9, 0, 9, 0, 9, 0],  # wild swings
        [9, 3, 9, 3, 0, 3, 0, 3],  # signals interrupted by the dead band
    ],
)
def test_fluctuating_load_does_not_flap(pool_queue: TaskQueue, loads: list[float]) -> None:
    pool_queue.scale_workers(3)
    scaler = scaler_for(pool_queue, settings(cooldown_seconds=0))
    for t, load in enumerate(loads):
        assert scaler.tick(now=t, load=load) is None
    assert pool_queue.worker_count() == 3
    assert scaler.decisions == []


def test_out_of_bounds_is_corrected_at_once(pool_queue: TaskQueue) -> None:
    pool_queue.scale_workers(8)
    scaler = scaler_for(pool_queue, settings())
    decision = scaler.tick(now=0, load=3)
    assert decision is not None and (decision.from_workers, decision.to_workers) == (8, 5)
    assert "max_workers is 5" in decision.reason
    assert pool_queue.worker_count() == 5


def test_tick_argument_errors(pool_queue: TaskQueue) -> None:
    scaler = scaler_for(pool_queue, settings())
    with pytest.raises(TypeError, match=r"tick\(load=...\) takes a number or None, got '9'"):
        scaler.tick(now=0, load="9")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be >= 0"):
        scaler.tick(now=0, load=-1)
    with pytest.raises(TypeError, match=r"tick\(now=...\)"):
        scaler.tick(now="soon")  # type: ignore[arg-type]


def test_no_pool_no_decision(queue: TaskQueue) -> None:
    scaler = scaler_for(queue, settings())
    assert scaler.tick(now=0, load=100) is None
    assert scaler.tick(now=1, load=100) is None


def test_measured_load_counts_pending_and_running(pool_queue: TaskQueue) -> None:
    started, release = threading.Event(), threading.Event()

    @pool_queue.task(name="a.block")
    def block() -> None:
        started.set()
        release.wait(10)

    @pool_queue.task(name="a.noop", queue="low")
    def noop() -> None:
        return None

    scaler = scaler_for(pool_queue, settings())
    assert scaler.measure(pool_queue.pool) == 0.0
    block.delay()
    assert started.wait(10)
    try:
        for _ in range(5):
            noop.delay()
        assert scaler.measure(pool_queue.pool) == 6.0  # 5 pending + 1 running, 1 thread
        pool_queue.pause("low")
        assert scaler.measure(pool_queue.pool) == 1.0  # a paused queue asks for no thread
    finally:
        release.set()


class FakePool:
    """A pool as the autoscaler sees it: no threads, no Redis."""

    id = "this-process"

    def __init__(self, threads: int) -> None:
        self.queues = ["default"]
        self.info: dict[str, object] = {}
        self.threads = threads
        self.resized: list[int] = []

    def count(self) -> int:
        return self.threads

    def busy(self) -> int:
        return 0

    def resize(self, count: int) -> None:
        self.resized.append(count)
        self.threads = count

    def _heartbeat_once(self) -> None:
        raise AssertionError("tick() never heartbeats: resize() publishes the new size")


class FakeInspection:
    """The four Inspection methods the autoscaler calls, answering from memory."""

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.recorded: list[tuple[str, int]] = []

    def paused_queues(self) -> set[str]:
        return set()

    def queue_lengths(self, queues: list[str]) -> dict[str, int]:
        return dict.fromkeys(queues, self.pending)

    def live_workers(self) -> dict[str, dict[str, object]]:
        return {
            "this-process": {"queues": ["default"], "threads": 99, "busy": 99},  # counted from the pool
            "other": {"queues": ["default"], "threads": 3, "busy": 1},
            "elsewhere": {"queues": ["low"], "threads": 50, "busy": 50},  # serves none of our queues
        }

    def record_scaling(self, direction: str, decision: dict[str, object]) -> None:
        self.recorded.append((direction, int(decision["to_workers"])))  # type: ignore[call-overload]


def test_scales_any_pool_through_the_inspection_port_alone() -> None:
    pool, inspection = FakePool(1), FakeInspection(pending=31)
    scaler = Autoscaler(
        inspection,  # type: ignore[arg-type]
        lambda: pool,
        settings(consecutive_signals=1, cooldown_seconds=0),
    )
    assert scaler.measure(pool) == 8.0  # (31 pending + 1 busy elsewhere) / (1 + 3 threads)
    decision = scaler.tick(now=0)
    assert decision is not None and decision.to_workers == 3
    assert pool.resized == [3] and inspection.recorded == [("up", 3)]
    assert pool.info["autoscaler"]["target"] == 3  # type: ignore[index]


def test_decisions_are_logged_and_counted(pool_queue: TaskQueue, caplog: pytest.LogCaptureFixture) -> None:
    scaler = scaler_for(pool_queue, settings(consecutive_signals=1, cooldown_seconds=0))
    with caplog.at_level(logging.INFO, logger="taskqueue.autoscaler"):
        scaler.tick(now=0, load=9)
        scaler.tick(now=1, load=0)
    lines = [r.getMessage() for r in caplog.records if r.name == "taskqueue.autoscaler"]
    assert lines[0].startswith("autoscaler: worker threads 1 -> 3 (load 9.00 tasks per thread")
    assert lines[1].startswith("autoscaler: worker threads 3 -> 2 (load 0.00 tasks per thread")
    m = pool_queue.get_metrics()
    assert (m.autoscaler.scale_ups, m.autoscaler.scale_downs) == (1, 1)
    assert m.autoscaler.last_decision["to_workers"] == 2
    assert m.autoscaler.last_decision["direction"] == "down"
    assert (scaler.scale_ups, scaler.scale_downs) == (1, 1)
    assert pool_queue.pool is not None
    assert pool_queue.pool.info["autoscaler"]["target"] == 2
    # published with the heartbeat: every process sees this process's autoscaler
    assert m.autoscaler.processes[pool_queue.pool.id]["scale_downs"] == 1


def test_settings_are_validated_by_the_config_rules(queue: TaskQueue) -> None:
    arg = r" \(from keyword argument\): "
    bad_max = r"autoscaler\.max_workers = 1" + arg + r"must be >= autoscaler\.min_workers \(4\)"
    with pytest.raises(ConfigurationError, match=bad_max):
        queue.start_autoscaler(min_workers=4, max_workers=1)
    flap = (
        r"autoscaler\.scale_up_threshold = 5\.0" + arg + r"must be > autoscaler\.scale_down_threshold \(5\)"
    )
    with pytest.raises(ConfigurationError, match=flap):
        queue.start_autoscaler(scale_down_threshold=5.0, scale_up_threshold=5.0)
    with pytest.raises(
        ConfigurationError, match=r"autoscaler\.min_workers = '2'" + arg + "expected a whole number"
    ):
        queue.start_autoscaler(min_workers="2")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"autoscaler\.tick_interval = 0" + arg + "must be > 0"):
        queue.start_autoscaler(tick_interval=0)
    # The same rules, in the same words, as when the settings load.
    with pytest.raises(ConfigurationError, match=r"autoscaler\.max_workers = 1 \(from AutoscalerSettings\)"):
        Autoscaler(queue.broker, lambda: queue.pool, AutoscalerSettings(min_workers=4, max_workers=1))
    with pytest.raises(TypeError, match=r"unknown autoscaler setting.*max_worker"):
        queue.start_autoscaler(max_worker=3)
    assert queue.pool is None and queue.autoscaler is None  # nothing started


# -- real runs ---------------------------------------------------------------------------------
FAST = {
    "tick_interval": 0.05,
    "cooldown_seconds": 0.1,
    "consecutive_signals": 2,
    "scale_up_threshold": 2.0,
    "scale_down_threshold": 0.5,
    "scale_up_count": 2,
    "scale_down_count": 1,
}


def _next(decisions: stdlib_queue.Queue[ScalingDecision], until: Callable[[ScalingDecision], bool]) -> list:
    seen = []
    while True:
        decision = decisions.get(timeout=20)
        seen.append(decision)
        if until(decision):
            return seen


def test_burst_scales_up_to_max_then_back_to_min(queue: TaskQueue, caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    @queue.task(name="a.slow")
    def slow(i: int) -> int:
        release.wait(20)
        return i

    decisions: stdlib_queue.Queue[ScalingDecision] = stdlib_queue.Queue()
    with caplog.at_level(logging.INFO, logger="taskqueue.autoscaler"):
        scaler = queue.start_autoscaler(1, 6, on_decision=decisions.put, **FAST)
        assert queue.worker_count() == 1
        assert queue.services.get(Autoscaler) is scaler is queue.autoscaler
        handles = queue.enqueue_many([slow.s(i) for i in range(30)])
        ups = _next(decisions, lambda d: d.to_workers == 6)
        assert [d.direction for d in ups] == ["up"] * len(ups)
        assert [d.to_workers for d in ups] == [3, 5, 6]
        assert queue.worker_count() == 6
        release.set()
        assert [h.result(timeout=20) for h in handles] == list(range(30))  # none interrupted
        downs = _next(decisions, lambda d: d.to_workers == 1)
        assert [d.to_workers for d in downs] == [5, 4, 3, 2, 1]
        assert queue.worker_count() == 1
        assert queue.pool is not None and queue.pool.busy() == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "taskqueue.autoscaler"]
    assert any(line.startswith("autoscaler: worker threads 1 -> 3") for line in lines)
    assert any(line.startswith("autoscaler: worker threads 2 -> 1") for line in lines)
    assert scaler.health().status == "healthy"
    queue.stop_autoscaler()
    assert not scaler.running and queue.autoscaler is None
    assert queue.worker_count() == 1  # stopping the autoscaler leaves the threads alone


def test_new_threads_serve_every_registered_task(queue: TaskQueue, registry: TaskRegistry) -> None:
    """Every thread the autoscaler adds runs every kind of task (function and class tasks)."""
    size = 4
    barriers = {kind: threading.Barrier(size, timeout=15) for kind in ("fn", "other", "cls")}
    ran: dict[str, set[str]] = {kind: set() for kind in barriers}
    hold = threading.Event()

    def meet(kind: str) -> str:
        # Every task of a kind waits until `size` of them run at once: so each of the
        # `size` threads must have taken one (a thread runs one task at a time).
        ran[kind].add(threading.current_thread().name)
        barriers[kind].wait()
        return kind

    @queue.task(name="a.fn")
    def fn() -> str:
        return meet("fn")

    @queue.task(name="a.other", queue="high")
    def other() -> str:
        return meet("other")

    class ClassTask(Task):
        name = "a.cls"

        def execute(self) -> str:
            return meet("cls")

    queue.register(ClassTask)
    assert "a.cls" in registry

    @queue.task(name="a.hold")
    def held() -> None:
        hold.wait(20)

    decisions: stdlib_queue.Queue[ScalingDecision] = stdlib_queue.Queue()
    queue.start_autoscaler(1, size, on_decision=decisions.put, **{**FAST, "scale_down_threshold": 0.0})
    first_threads = {t.name for t in threading.enumerate() if t.name.startswith("taskqueue-worker-")}
    holders = [held.delay() for _ in range(12)]
    _next(decisions, lambda d: d.to_workers == size)
    queue.stop_autoscaler()  # keep the size fixed from here on
    hold.set()
    for h in holders:
        h.result(timeout=20)
    for kind, send in (("fn", fn.s), ("other", other.s), ("cls", ClassTask)):
        handles = queue.enqueue_many([send() for _ in range(size)])
        assert [h.result(timeout=20) for h in handles] == [kind] * size
    for kind, names in ran.items():
        assert len(names) == size, f"{kind} ran on {sorted(names)}"
        assert names - first_threads, f"no thread added by the autoscaler ran {kind}"
