"""Flow control across real worker processes (DESIGN 11, issue 16), with a ledger of runs.

Every run appends its task name, id, argument, pid and start/end times to a list on the
suite's own server; the assertions read only that ledger and the queue's records.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
import redis

from taskqueue import Signature, TaskQueue
from tests.conftest import wait_until

from .conftest import CHAOS, ROOT, report, stop_processes

pytestmark = CHAOS
SCRIPT = ROOT / "tests" / "chaos" / "limits_worker.py"


class Procs:
    def __init__(self, url: str, ledger_url: str, prefix: str, tmp: Path) -> None:
        self.url, self.ledger_url, self.prefix, self.tmp = url, ledger_url, prefix, tmp
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        log = self.tmp / f"proc-{len(self.procs)}.log"
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), args[0], self.url, self.ledger_url, self.prefix, *args[1:]],
            stdout=subprocess.PIPE, stderr=log.open("w"), env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready", log.read_text()
        return proc

    def stop(self) -> None:
        stop_processes(self.procs)


@pytest.fixture
def procs(chaos_server, redis_url: str, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(chaos_server.url, redis_url, f"limits-{uuid.uuid4().hex[:8]}", tmp_path)
    yield p
    p.stop()


def producer(url: str, prefix: str) -> TaskQueue:
    """The test's own queue object, declaring the workers' tasks: a call's limits are the
    ones its producer declares."""
    sys.path.insert(0, str(ROOT / "tests" / "chaos"))
    from limits_worker import build

    return build(url, "unix:///nonexistent", prefix)


def go(redis_client: redis.Redis, prefix: str, producers: int) -> None:
    at = f"{time.time() + 0.3:.6f}"
    redis_client.rpush(f"{prefix}:go", *([at] * producers))


def runs(ledger: redis.Redis, prefix: str, name: str) -> list[tuple[str, str, int, float, float]]:
    """(id, arg, pid, start, end) of the finished runs of ``name``, by start."""
    out = []
    for raw in ledger.lrange(f"{prefix}:runs", 0, -1):
        n, task_id, arg, pid, start, end = raw.decode().split("|")
        if n == name:
            out.append((task_id, arg, int(pid), float(start), float(end)))
    return sorted(out, key=lambda r: r[3])


def busiest_window(starts: list[float], width: float = 1.0) -> int:
    """The most starts in any window of ``width`` seconds (closed at both ends)."""
    starts = sorted(starts)
    best, j = 0, 0
    for i, s in enumerate(starts):
        while starts[j] < s - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_a_rate_limit_holds_across_processes_and_holds_nothing_back(procs: Procs, redis_client) -> None:
    for _ in range(3):
        procs.start("work", "4")
    q = producer(procs.url, procs.prefix)
    limited = q.enqueue_many([Signature("lim.rate", (i,)) for i in range(40)])
    sent = time.time()
    free = q.enqueue_many([Signature("lim.free", (i,)) for i in range(10)])
    wait_until(lambda: len(runs(redis_client, procs.prefix, "lim.free")) == 10, timeout=10)
    free_done = max(r[4] for r in runs(redis_client, procs.prefix, "lim.free"))
    wait_until(lambda: len(runs(redis_client, procs.prefix, "lim.rate")) == 40, timeout=20)
    starts = [r[3] for r in runs(redis_client, procs.prefix, "lim.rate")]
    span = max(starts) - min(starts)
    window = busiest_window(starts)
    pids = {r[2] for r in runs(redis_client, procs.prefix, "lim.rate")}
    report("rate-limit-10/s", tasks=40, span_s=round(span, 2), busiest_window=window,
           free_behind_s=round(free_done - sent, 3), processes=len(pids))  # fmt: skip
    assert window <= 10 + 1, f"{window} starts in one second (limit 10, burst 1)"
    # 3.9 s is the ideal; the upper bound leaves room for a loaded 2-core machine (5.2 s seen
    # while the whole suite ran beside it). A starved limiter (held tasks waiting for idle
    # polls instead of being woken when their turn comes) takes several times longer.
    assert 3.5 <= span <= 7.0, f"40 starts at 10/s took {span:.2f} s (3.9 expected)"
    assert free_done - sent < 1.0, "the unlimited tasks waited behind the limited ones"
    assert len(pids) >= 2, "one process ran everything: the limit was not shared"
    assert all(h.status == "SUCCEEDED" for h in limited + free)
    q.close()


def test_concurrency_one_across_processes_survives_a_kill(procs: Procs, redis_client) -> None:
    workers = [procs.start("work", "2") for _ in range(3)]
    q = producer(procs.url, procs.prefix)
    handles = q.enqueue_many([Signature("lim.single", (i,)) for i in range(20)])

    def running() -> tuple[int, float] | None:
        """(pid, start) of the run in progress, from the ledger."""
        starts = [raw.decode().split("|") for raw in redis_client.lrange(f"{procs.prefix}:starts", 0, -1)]
        ended = {(r[0], r[3]) for r in runs(redis_client, procs.prefix, "lim.single")}
        live = [(int(f[3]), float(f[4])) for f in starts if (f[1], float(f[4])) not in ended]
        return live[0] if len(live) == 1 else None

    wait_until(lambda: len(runs(redis_client, procs.prefix, "lim.single")) >= 5, timeout=20)
    pid, started = wait_until(running, timeout=5)
    victim = next(p for p in workers if p.pid == pid)
    victim.kill()
    killed_at = time.time()
    victim.wait(10)
    wait_until(lambda: all(h.status == "SUCCEEDED" for h in handles), timeout=60)
    done = runs(redis_client, procs.prefix, "lim.single")
    spans = sorted([(r[3], r[4]) for r in done] + [(started, killed_at)])  # the killed run ends with it
    overlaps = [(a, b) for a, b in pairwise(spans) if b[0] < a[1] - 0.001]
    report("concurrency-1-kill", tasks=20, runs=len(done), overlaps=len(overlaps))
    assert not overlaps, f"runs overlapped: {overlaps[:3]}"
    assert {r[0] for r in done} == {h.id for h in handles}
    q.close()


def test_limit_by_tenant_across_processes(procs: Procs, redis_client) -> None:
    for _ in range(3):
        procs.start("work", "3")
    q = producer(procs.url, procs.prefix)
    a = q.enqueue_many([Signature("lim.tenant", ("a", i)) for i in range(15)])
    sent = time.time()
    b = q.enqueue_many([Signature("lim.tenant", ("b", i)) for i in range(5)])
    wait_until(lambda: all(h.status == "SUCCEEDED" for h in a + b), timeout=20)
    done = runs(redis_client, procs.prefix, "lim.tenant")
    starts = {t: [r[3] for r in done if r[1] == t] for t in ("a", "b")}
    b_done = max(r[4] for r in done if r[1] == "b")
    report("limit-by-tenant", a_span=round(max(starts["a"]) - min(starts["a"]), 2), b_done_s=round(b_done - sent, 2),
           a_window=busiest_window(starts["a"]), b_window=busiest_window(starts["b"]))  # fmt: skip
    assert busiest_window(starts["a"]) <= 6 and busiest_window(starts["b"]) <= 6
    assert max(starts["a"]) - min(starts["a"]) >= 2.5  # 15 at 5/s: 2.8 s
    assert b_done - sent < 1.4, "tenant b waited behind tenant a's backlog"  # 5 at 5/s: 0.8 s
    q.close()


def test_unique_calls_racing_in_three_processes_make_one_task(procs: Procs, redis_client) -> None:
    for threads, first in ((3, 0), (3, 3), (2, 6)):
        procs.start("produce", str(threads), "unique", "0", str(first))
    go(redis_client, procs.prefix, 3)
    wait_until(lambda: redis_client.llen(f"{procs.prefix}:calls") == 8, timeout=20)
    calls = [raw.decode().split("|") for raw in redis_client.lrange(f"{procs.prefix}:calls", 0, -1)]
    assert len({c[0] for c in calls}) == 1, calls
    assert sorted(c[1] for c in calls) == ["0"] + ["1"] * 7


def test_debounced_calls_from_three_processes_run_once_with_the_last(procs: Procs, redis_client) -> None:
    procs.start("work", "2")
    for threads, first in ((4, 0), (3, 4), (3, 7)):  # indexes 0..9, 30 ms apart
        procs.start("produce", str(threads), "debounce", "0", str(first))
    go(redis_client, procs.prefix, 3)
    wait_until(lambda: redis_client.llen(f"{procs.prefix}:calls") == 10, timeout=20)
    calls = [raw.decode().split("|") for raw in redis_client.lrange(f"{procs.prefix}:calls", 0, -1)]
    last_call = max(float(c[3]) for c in calls)
    assert len({c[0] for c in calls}) == 1 and sum(c[1] == "1" for c in calls) == 9
    wait_until(lambda: runs(redis_client, procs.prefix, "lim.debounce"), timeout=10)
    done = runs(redis_client, procs.prefix, "lim.debounce")
    assert [r[1] for r in done] == ["9"]
    assert done[0][3] >= last_call + 1.0 - 0.05, "it ran before one window after the last call"
