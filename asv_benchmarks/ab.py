"""A/B: the asv drain and enqueue figures of two checkouts, in alternating rounds of one run.

    python asv_benchmarks/ab.py BEFORE_DIR AFTER_DIR [--rounds 5] [--hook]

Each round runs, for each checkout in turn and in a fresh process with that
checkout first on the path, the code of its own asv suite
(``asv_benchmarks/benchmarks/common.py``): a drain of 20,000 preloaded no-op
tasks on 8 threads, 1,000 single ``delay()`` calls and one ``enqueue_many`` of
1,000, all on one throw-away embedded server (``TASKQUEUE_BENCH_URL``).
Alternating rounds on one server is what makes the two comparable on a shared,
noisy machine; the medians are printed with each round's figures. ``--hook``
adds a third column: AFTER with one no-op hook on ``task_succeeded``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROUND = r"""
import json, sys, time
sys.path.insert(0, "asv_benchmarks")
from benchmarks.common import open_bench

hook = sys.argv[1] == "hook"
out = {}
bench = open_bench()
try:
    if hook:
        bench.queue.on("task_succeeded", lambda event: None)
    bench.preload(20000)
    out["drain_tasks_per_s"] = 20000 / bench.drain(8, 20000)
finally:
    bench.close()
bench = open_bench()
try:
    noop = bench.noop
    noop.delay()
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(1000):
        noop.delay()
    out["delay_per_s"] = 1000 / (time.perf_counter() - t)
    out["delay_client_cpu_us"] = (time.process_time() - cpu) * 1000
    t = time.perf_counter()
    bench.queue.enqueue_many([noop.s() for _ in range(1000)])
    out["enqueue_many_per_s"] = 1000 / (time.perf_counter() - t)
finally:
    bench.close()
print(json.dumps(out))
"""


def one_round(checkout: Path, url: str, mode: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "TASKQUEUE_BENCH_URL": url}
    done = subprocess.run(
        [sys.executable, "-c", ROUND, mode], cwd=checkout, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hook", action="store_true", help="also AFTER with one no-op hook")
    opts = parser.parse_args()

    from taskqueue.embedded import EmbeddedServer

    columns = [("before", opts.before, "plain"), ("after", opts.after, "plain")]
    if opts.hook:
        columns.append(("after+hook", opts.after, "hook"))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in columns}
    with tempfile.TemporaryDirectory(prefix="tq-ab-") as tmp:
        server = EmbeddedServer(tmp, persistent=False)
        server.start()
        try:
            for r in range(opts.rounds):
                for name, checkout, mode in columns:
                    figures = one_round(checkout.resolve(), server.url, mode)
                    results[name].append(figures)
                    print(f"round {r + 1} {name:<11}", {k: round(v) for k, v in figures.items()}, flush=True)
        finally:
            server.stop()
    print("\nmedians (tasks/s; delay_client_cpu_us: CPU of this process per delay() call):")
    for metric in ("drain_tasks_per_s", "delay_per_s", "delay_client_cpu_us", "enqueue_many_per_s"):
        medians = {name: statistics.median(f[metric] for f in results[name]) for name, _, _ in columns}
        ratios = "  ".join(
            f"{n}/before {medians[n] / medians['before']:.3f}" for n in medians if n != "before"
        )
        print(f"  {metric:<20}", "  ".join(f"{n} {v:,.0f}" for n, v in medians.items()), " ", ratios)


if __name__ == "__main__":
    main()
