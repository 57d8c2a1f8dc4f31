"""CPU-bound throughput with 1 and with N worker processes, side by side in one run:

    python asv_benchmarks/processes_cpu.py [--max-processes 2] [--threads 2] [--tasks 60] [--rounds 3]

Threads of one process share the interpreter lock, so pure-Python tasks run one at a
time however many threads there are; ``taskqueue worker --processes N`` runs them in
parallel up to the cores. For each process count (1..max, rounds interleaved so that the
machine's noise falls on every count alike) it starts ``taskqueue worker --processes N
--workers THREADS`` on a throw-away embedded server, waits until every process serves,
enqueues TASKS CPU-bound tasks (each a pure-Python loop of about 50 ms) and times them
until the last result is stored. Prints tasks/s per count (median of the rounds) and the
ratio to one process.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from taskqueue import Signature, TaskQueue, TaskRegistry
from taskqueue.config import Settings
from taskqueue.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]

APP = """
from taskqueue import TaskQueue, TaskRegistry

q = TaskQueue.from_settings(registry=TaskRegistry())


@q.task(name="spin")
def spin(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
"""


def calibrate(seconds: float = 0.05) -> int:
    """Loop length that takes about ``seconds`` here."""
    n = 100_000
    while True:
        started = time.perf_counter()
        total = 0
        for i in range(n):
            total += i * i
        took = time.perf_counter() - started
        if took > 0.01:
            return max(1, int(n * seconds / took))
        n *= 4


def one_round(url: str, workdir: str, processes: int, threads: int, tasks: int, n: int) -> float:
    """tasks/s of ``processes`` x ``threads`` on ``tasks`` spins of length ``n``."""
    env = {**os.environ, "TASK_QUEUE_REDIS__URL": url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskqueue", "worker", "--app", "bench_spin:q",
         "--processes", str(processes), "--workers", str(threads), "--log-level", "warning"],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    q = TaskQueue(url, settings=Settings(), registry=TaskRegistry())
    q.task(name="spin")(lambda n: n)
    try:
        deadline = time.monotonic() + 60
        while len(q.broker.live_workers()) < processes:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the workers did not start (exit {proc.poll()})")
            time.sleep(0.05)
        started = time.perf_counter()
        handles = q.enqueue_many([Signature("spin", (n,)) for _ in range(tasks)])
        for handle in handles:
            handle.result(timeout=600)
        return tasks / (time.perf_counter() - started)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        q.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    n = calibrate()
    counts = list(range(1, opts.max_processes + 1))
    results: dict[int, list[float]] = {c: [] for c in counts}
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bench_spin.py").write_text(APP)
        server = EmbeddedServer(Path(tmp, "redis"), persistent=False)
        server.start()
        try:
            for _ in range(opts.rounds):
                for count in counts:
                    results[count].append(one_round(server.url, tmp, count, opts.threads, opts.tasks, n))
        finally:
            server.stop()
    base = statistics.median(results[1])
    cores = os.cpu_count()
    print(f"{opts.tasks} CPU-bound tasks of ~50 ms, {opts.threads} threads per process, {cores} cores")
    for count in counts:
        rate = statistics.median(results[count])
        rounds = ", ".join(f"{r:.1f}" for r in results[count])
        print(f"  --processes {count}: {rate:6.1f} tasks/s (rounds: {rounds})  ratio to 1: {rate / base:.2f}")


if __name__ == "__main__":
    main()
