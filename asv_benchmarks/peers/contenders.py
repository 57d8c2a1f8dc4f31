"""The libraries compared: how to import each one's adapter (apps/) and start its worker."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    module: str  # adapter in apps/: enqueue_one(), enqueue_batch(n), LABEL, BATCH_API
    distribution: str  # whose version is reported
    worker: Callable[[str, int], list[str]]  # (url, threads) -> argv
    shape: Callable[[int], str]  # threads -> "1 process x 8 threads"


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


CONTENDERS = [
    Contender(
        "taskqueue", "taskqueue", "bench_taskqueue", "taskqueue",
        lambda url, t: _py("-m", "bench_taskqueue", str(t)),
        lambda t: f"1 process x {t} threads",
    ),
    Contender(
        "rq-simple", "RQ SimpleWorker", "bench_rq", "rq",
        lambda url, t: _py("-m", "rq.cli", "worker", "-u", url, "-w", "rq.worker.SimpleWorker",
                           "--quiet", "default"),
        lambda t: "1 process x 1 thread (RQ has no threads)",
    ),
    Contender(
        "rq-pool", "RQ worker-pool", "bench_rq", "rq",
        # SimpleWorker processes: RQ's default Worker forks once per task, which
        # on two cores drains a no-op queue at about a tenth of this rate.
        lambda url, t: _py("-m", "rq.cli", "worker-pool", "-u", url, "-n", str(t),
                           "-w", "rq.worker.SimpleWorker", "--quiet", "default"),
        lambda t: f"{t} processes (worker-pool -n {t} -w SimpleWorker)",
    ),
    Contender(
        "huey", "Huey", "bench_huey", "huey",
        lambda url, t: _py("-m", "huey.bin.huey_consumer", "bench_huey.huey", "-k", "thread", "-w", str(t),
                           "--quiet"),
        lambda t: f"1 process x {t} threads (-k thread -w {t})",
    ),
    Contender(
        "dramatiq", "Dramatiq", "bench_dramatiq", "dramatiq",
        lambda url, t: _py("-m", "dramatiq", "bench_dramatiq", "--processes", "1", "--threads", str(t)),
        lambda t: f"1 process x {t} threads",
    ),
    Contender(
        "celery", "Celery", "bench_celery", "celery",
        lambda url, t: _py("-m", "celery", "-A", "bench_celery", "worker", "-P", "threads", "-c", str(t),
                           "--loglevel", "WARNING"),
        lambda t: f"1 process x {t} threads (-P threads -c {t})",
    ),
]  # fmt: skip
BY_KEY = {c.key: c for c in CONTENDERS}


__all__ = ["BY_KEY", "CONTENDERS", "Contender"]
