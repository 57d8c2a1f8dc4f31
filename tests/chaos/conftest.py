"""Shared machinery of the chaos suite: scale, servers, worker processes, the ledger.

Counts scale with ``TASKQUEUE_CHAOS_SCALE`` (default 1: the CI size, a few
minutes for the whole suite on 2 cores; 20 is the full size of issue 10).
Each scenario writes its figures to ``test-artifacts/chaos-figures.jsonl``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from taskqueue import Signature, TaskQueue, TaskRegistry
from taskqueue.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent.parent
WORKER = ROOT / "tests" / "chaos" / "chaos_worker.py"
SCALE = float(os.environ.get("TASKQUEUE_CHAOS_SCALE", "1"))


def scaled(n: int) -> int:
    return max(1, int(n * SCALE))


def patience(seconds: float) -> float:
    """A wait bound that grows with the scale (bigger runs take longer)."""
    return seconds * max(1.0, SCALE)


#: Every chaos test: slow (skipped by --skip-slow) and with a time limit that scales.
CHAOS = [pytest.mark.slow, pytest.mark.timeout(patience(120))]


def report(name: str, **figures: object) -> None:
    """Print the figures of a run and keep them in test-artifacts/."""
    line = {"scenario": name, "scale": SCALE, **figures}
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    with (out / "chaos-figures.jsonl").open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    print(f"\nchaos figures: {json.dumps(line)}")


@pytest.fixture
def chaos_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A persistent server of the scenario's own, to restart, pause, starve or disconnect."""
    server = EmbeddedServer(tmp_path / "server", persistent=True)
    try:
        server.start()
        yield server
    finally:
        if server.process is not None:
            server.process.send_signal(signal.SIGCONT)  # in case a scenario failed while it was paused
        server.stop()


@dataclass
class Run:
    id: str
    attempt: int
    pid: int
    at: float
    how: str = ""


@dataclass
class Ledger:
    """What the workers wrote about every run, read from the ledger server."""

    client: redis.Redis
    prefix: str = field(default_factory=lambda: f"ledger-{uuid.uuid4().hex[:8]}")

    def _runs(self, kind: str) -> dict[str, list[Run]]:
        out: dict[str, list[Run]] = defaultdict(list)
        for raw in self.client.lrange(f"{self.prefix}:{kind}", 0, -1):
            parts = raw.decode().split("|")
            run = Run(parts[0], int(parts[1]), int(parts[2]), float(parts[3]), *parts[4:5])
            out[run.id].append(run)
        return out

    def starts(self) -> dict[str, list[Run]]:
        return self._runs("start")

    def ends(self) -> dict[str, list[Run]]:
        return self._runs("end")

    def ended_count(self) -> int:
        return self.client.llen(f"{self.prefix}:end")

    def overlaps(self) -> list[str]:
        return [o.decode() for o in self.client.lrange(f"{self.prefix}:overlap", 0, -1)]


class Workers:
    """Worker processes (tests/chaos/chaos_worker.py) that can be killed and replaced."""

    def __init__(self, url: str, ledger: Ledger, ledger_url: str, tmp: Path, overrides: dict | None = None):
        self.url, self.ledger, self.ledger_url = url, ledger, ledger_url
        self.tmp = tmp
        self.locks = tmp / "locks"
        self.locks.mkdir(exist_ok=True)
        self.overrides = json.dumps(overrides or {})
        self.procs: list[subprocess.Popen] = []
        self.killed: set[int] = set()
        self.logs: list[Path] = []

    def spawn(self, threads: int = 2, wait_ready: bool = True) -> subprocess.Popen:
        log = self.tmp / f"worker-{len(self.logs)}.log"
        self.logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), self.url, self.ledger_url, self.ledger.prefix, str(threads),
             str(self.locks), self.overrides],
            stdout=subprocess.PIPE, stderr=log.open("w"), env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        self.procs.append(proc)  # before it is ready: stop_all stops one that never gets there
        if wait_ready and proc.stdout.readline().strip() != b"ready":
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"a chaos worker did not start: {log.read_text()}")
        return proc

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    def kill_random(self, rng: random.Random) -> int:
        victim = rng.choice(self.alive())
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.killed.add(victim.pid)
        return victim.pid

    def stop_all(self) -> None:
        stop_processes(self.procs)

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs)


def producer(url: str, **overrides: dict) -> TaskQueue:
    """A queue object in the test process that only enqueues and inspects."""
    sys.path.insert(0, str(ROOT / "tests" / "chaos"))
    from chaos_worker import chaos_settings

    registry = TaskRegistry()
    q = TaskQueue(url, settings=chaos_settings(**overrides), registry=registry)
    q.task(name="chaos.work", max_retries=50)(lambda work_ms=0.0, mode="python", pad="": None)
    return q


def work(work_ms: float, mode: str = "python", pad: str = "") -> Signature:
    return Signature("chaos.work", (work_ms, mode, pad))


def check_ledger(q: TaskQueue, ids: list[str], ledger: Ledger, *, killed: set[int] = frozenset()) -> dict:
    """The end-of-run assertions every scenario shares; returns its figures.

    - no id lost: every enqueued id SUCCEEDED, and its ledger shows a run of the
      final attempt that ended;
    - duplicates explained: a task ran more than once only if its attempt count
      says so, and every earlier attempt either ran on a killed process or lost
      its lease (a ``lease-expired`` entry in its history for each).
    """
    starts, ends = ledger.starts(), ledger.ends()
    records = dict(zip(ids, q.broker.get_tasks(ids, history=True), strict=True))
    lost = [i for i, r in records.items() if r is None or r.status != "SUCCEEDED"]
    assert not lost, f"{len(lost)} task(s) lost or not finished: " + ", ".join(
        f"{i}={records[i].status if records[i] else 'missing'}" for i in lost[:10]
    )
    duplicates = 0
    redelivered = 0
    for task_id, record in records.items():
        runs = starts.get(task_id, [])
        final = record.attempts
        assert any(r.attempt == final for r in ends.get(task_id, [])), f"{task_id}: final attempt never ended"
        assert all(r.attempt <= final for r in runs), f"{task_id}: a run with an attempt above {final}"
        assert len({r.attempt for r in runs}) == len(runs), f"{task_id}: one attempt ran twice: {runs}"
        expired = [h for h in record.history if h.get("event") == "lease-expired"]
        assert len(expired) == final - 1, (
            f"{task_id}: {final} attempts but {len(expired)} lease-expired entries: {record.history}"
        )
        if final > 1:
            redelivered += 1
        if len(runs) > 1:
            duplicates += 1
        for run in runs:
            if run.attempt < final and killed:
                assert run.pid in killed, f"{task_id}: attempt {run.attempt} reran without a kill ({run})"
    return {"tasks": len(ids), "redelivered": redelivered, "ran_more_than_once": duplicates}


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop worker processes as a supervisor would: SIGTERM (after SIGCONT, for one a test
    paused), 20 s to drain, then SIGKILL; their output pipes closed."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        if p.stdout:
            p.stdout.close()
