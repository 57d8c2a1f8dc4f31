"""The measuring instruments still work: every asv benchmark runs once at toy
size, and the peer comparison runs in its quickest mode for taskqueue alone.

Nothing here asserts a speed; it asserts that each instrument produces a
plausible reading, so that the benchmarks cannot rot unnoticed.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASV = ROOT / "asv_benchmarks"
COMPARE = ASV / "peers" / "compare.py"


@pytest.fixture
def bench_modules(redis_url: str, redis_client, monkeypatch: pytest.MonkeyPatch):
    """The asv benchmark modules, pointed at the test server (TASKQUEUE_BENCH_URL)."""
    monkeypatch.syspath_prepend(str(ASV))
    monkeypatch.setenv("TASKQUEUE_BENCH_URL", redis_url)
    names = ["bench_serialization", "bench_config", "bench_enqueue", "bench_worker"]
    return {name: importlib.import_module(f"benchmarks.{name}") for name in names}


def _benchmark_methods(cls: type) -> list[str]:
    return [n for n, _ in inspect.getmembers(cls, inspect.isfunction) if n.startswith(("time_", "track_"))]


def test_micro_benchmarks_run_and_ratios_are_positive(bench_modules) -> None:
    for module in (bench_modules["bench_serialization"], bench_modules["bench_config"]):
        classes = [
            c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__
        ]
        assert classes, f"{module.__name__} defines no benchmark class"
        for cls in classes:
            for name in _benchmark_methods(cls):
                if name.endswith("_ratio"):
                    continue  # timed below with fewer loops
                getattr(cls(), name)()
    serialization = bench_modules["bench_serialization"]
    fast = serialization._best(lambda: serialization.decode(serialization.ENCODED), number=200, repeat=2)
    assert 0 < fast < 0.01


def test_enqueue_benchmarks_write_tasks(bench_modules, redis_client) -> None:
    bench = bench_modules["bench_enqueue"].Enqueue()
    bench.setup()
    try:
        bench.time_enqueue_many_1000()
        assert bench.bench.queue.pending("default")["default"] == 1001
    finally:
        bench.teardown()


def test_producer_threads_benchmark_measures_both_sides(
    bench_modules, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = bench_modules["bench_enqueue"].ProducerThreads
    monkeypatch.setattr(cls, "calls", 20)
    bench = cls()
    r = bench.setup_cache()
    assert bench.track_delay_8_threads(r) > 0 and bench.track_lpush_8_threads(r) > 0
    assert bench.track_delay_to_lpush_ratio_8_threads(r) == r["delay"] / r["lpush"]


def test_worker_benchmarks_measure_something(bench_modules, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = bench_modules["bench_worker"]
    monkeypatch.setattr(worker, "DRAIN", 300)
    drain = worker.Drain()
    drain.setup(4)
    try:
        drain.time_drain_20000(4)
        assert drain.bench.counter.value == 300
    finally:
        drain.teardown(4)

    latency = worker.Latency()
    latency.samples = 20
    samples = latency.setup_cache()
    assert len(samples) == 20
    assert 0 < latency.track_latency_p50_ms(samples) <= latency.track_latency_p99_ms(samples)

    idle = worker.IdlePool()
    idle.seconds = 0.3
    cpu = idle.setup_cache()
    assert 0 <= idle.track_idle_pool_cpu_percent(cpu) < 100

    memory = worker.Memory()
    memory.tasks = 300
    rss = memory.setup_cache()
    assert memory.track_peak_rss_mb(rss) > 10

    trips = worker.RoundTrips()
    trips.tasks = 200
    counts = trips.setup_cache()
    # enqueue_many and the workers' batched ack+fetch send far fewer commands than tasks.
    assert 0 < trips.track_client_commands_per_task(counts) <= 3
    assert 0 < trips.track_round_trips_per_task(counts) < trips.track_server_commands_per_task(counts)


def test_percentile_is_nearest_rank(bench_modules) -> None:
    percentile = importlib.import_module("benchmarks.common").percentile
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


def test_compare_quick_run_for_taskqueue(redis_url: str, redis_client, tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    argv = [sys.executable, str(COMPARE), "--quick", "--only", "taskqueue", "--tasks", "200"]
    argv += ["--enqueue", "200", "--no-redis-benchmark", "--url", redis_url, "--json", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    row = report["results"]["taskqueue"]
    assert "error" not in row
    for metric in ("single_enqueue", "threaded_enqueue", "batch_enqueue", "end_to_end"):
        assert row[metric]["median"] > 0 and math.isfinite(row[metric]["median"])
    assert report["raw_lpush"]["single"]["median"] > 0 and report["raw_lpush"]["threaded"]["median"] > 0
    assert "| taskqueue | 1 process x 8 threads |" in proc.stdout
    assert "| redis-py LPUSH loop (one round trip a call) |" in proc.stdout
    assert report["config"]["tasks"] == 200
    assert "(commit " in report["versions"]["taskqueue"]  # which checkout was measured


def test_compare_refuses_a_checkout_without_taskqueue(tmp_path: Path) -> None:
    argv = [sys.executable, str(COMPARE), "--checkout", str(tmp_path), "--only", "taskqueue"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "no taskqueue package there" in proc.stderr


def test_compare_targets_use_the_best_peer() -> None:
    sys.path.insert(0, str(COMPARE.parent))
    try:
        compare = importlib.import_module("compare")
    finally:
        sys.path.remove(str(COMPARE.parent))

    def row(label: str, single: float, threaded: float, batch: float, e2e: float) -> dict:
        return {
            "label": label,
            "single_enqueue": {"median": single},
            "threaded_enqueue": {"median": threaded},
            "batch_enqueue": {"median": batch},
            "end_to_end": {"median": e2e},
        }

    report = {
        "results": {
            "taskqueue": row("taskqueue", 3000, 9000, 90_000, 6000),
            "rq-simple": row("RQ SimpleWorker", 3000, 3000, 9000, 300),
            "huey": row("Huey", 1000, 4000, 1000, 2500),
        },
        "redis_benchmark": {50: {"LPUSH": {"median": 600_000}}},
        "raw_lpush": {"single": {"median": 6000}},
    }
    got = {t["target"]: (t["against"], round(t["ratio"], 2), t["met"]) for t in compare.targets(report)}
    assert got["end-to-end >= 3.5x the best peer"] == ("Huey", 2.4, False)
    assert got["single delay() >= 1.0x Huey's"] == ("Huey", 3.0, True)
    assert got["8 producer threads >= 2x Huey with 8 threads"] == ("Huey", 2.25, True)
    assert got["enqueue_many >= 10x RQ enqueue_many"] == ("RQ", 10.0, True)
    assert got["enqueue_many >= 30% of redis-benchmark -P 50 LPUSH"] == ("redis-benchmark", 0.15, False)
    assert got["single delay() >= a raw redis-py LPUSH loop"] == ("redis-py LPUSH", 0.5, False)
