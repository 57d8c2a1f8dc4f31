"""Workflows under chaos: 20 chords of 15 members while worker processes are SIGKILLed
and replaced every second, on one server and on a 3-master Redis Cluster (members in
three queues, three slot groups, on different masters).

Every callback must run with all 15 results in member order, no chord may be lost,
and each callback is *released* (made runnable) exactly once: the release counter
``wf_released`` the script keeps on the task is 1. Its *execution* is at least once,
like every task's: a callback whose worker was killed mid-run runs again, and its
history then shows the lapsed lease for each earlier attempt.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from taskqueue import Signature, TaskQueue, TaskRegistry, TaskStatus, chord

from .conftest import CHAOS, ROOT, report, stop_processes
from .workflow_worker import define

pytestmark = CHAOS

WORKER = ROOT / "tests" / "chaos" / "workflow_worker.py"
CHORDS, MEMBERS = 20, 15
QUEUES = ("high", "default", "low")


class Workers:
    def __init__(self, url: str, ledger_url: str, prefix: str, tmp: Path) -> None:
        self.url, self.ledger_url, self.prefix, self.tmp = url, ledger_url, prefix, tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()

    def spawn(self, wait_ready: bool = True) -> None:
        log = (self.tmp / f"worker-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), self.url, self.ledger_url, self.prefix, "3"],
            stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        self.procs.append(proc)
        if wait_ready:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"

    def kill_random(self, rng: random.Random) -> None:
        alive = [p for p in self.procs if p.poll() is None]
        victim = rng.choice(alive)
        victim.kill()
        victim.wait(10)
        self.killed.add(victim.pid)

    def stop_all(self) -> None:
        stop_processes(self.procs)


@pytest.fixture(params=["server", "cluster"])
def chaos_url(request: pytest.FixtureRequest) -> str:
    if request.param == "cluster":
        return str(request.getfixturevalue("cluster_url"))
    return str(request.getfixturevalue("chaos_server").url)


def test_chords_survive_worker_kills(chaos_url: str, redis_url: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "chaos"))
    from chaos_worker import chaos_settings

    q = TaskQueue(chaos_url, settings=chaos_settings(), registry=TaskRegistry())
    define(q)
    if q.broker.keys.cluster:  # the point of the variant: the queues live on different masters
        nodes = {
            q.broker.client.get_node_from_key(q.broker.keys.for_queue(x).task_prefix).name for x in QUEUES
        }
        assert len(nodes) >= 2, nodes
    prefix = f"wfchaos-{uuid.uuid4().hex[:8]}"
    ledger = redis.Redis.from_url(redis_url)
    rng = random.Random(15)
    workers = Workers(chaos_url, redis_url, prefix, tmp_path)
    chords = []
    for c in range(CHORDS):
        members = [
            Signature("wf.member", (c, i, rng.uniform(50, 300)), queue=QUEUES[(c + i) % 3])
            for i in range(MEMBERS)
        ]
        chords.append(q.send_workflow(chord(members, Signature("wf.collect", (c,)))))
    for _ in range(3):
        workers.spawn()
    kills = 0
    started = time.monotonic()
    tick = threading.Event()
    try:
        while not all(h.body.status.final for h in chords):
            assert time.monotonic() - started < 120, "the chords did not finish"
            tick.wait(1.0)  # the scenario's clock: one kill a second
            workers.kill_random(rng)
            kills += 1
            workers.spawn(wait_ready=False)
        elapsed = time.monotonic() - started
    finally:
        workers.stop_all()
    calls: dict[int, list[tuple[int, list[int]]]] = {}
    for raw in ledger.lrange(f"{prefix}:callback", 0, -1):
        c, attempt, _pid, results = raw.decode().split("|", 3)
        calls.setdefault(int(c), []).append((int(attempt), json.loads(results)))
    rerun = 0
    for c, h in enumerate(chords):
        body = h.body
        assert body.status == TaskStatus.SUCCEEDED, (c, body.record().reason)
        assert body.result(timeout=1) == MEMBERS
        assert all(results == [c * 100 + i for i in range(MEMBERS)] for _, results in calls[c]), calls[c]
        k = q.broker.keys.for_queue(body.record().queue)
        assert q.broker.client.hget(k.task(body.id), "wf_released") == b"1", f"chord {c} released twice"
        record = body.record(history=True)
        expired = [e for e in record.history if e.get("event") == "lease-expired"]
        assert len(calls[c]) >= 1 and record.attempts == len(expired) + 1, (calls[c], record.history)
        rerun += len(calls[c]) > 1
    assert kills >= 5, f"only {kills} kills: too short to prove anything"
    report("workflow-kills", backend="cluster" if q.broker.keys.cluster else "server", kills=kills,
           seconds=round(elapsed, 1), chords=CHORDS, members=MEMBERS, callbacks_rerun=rerun)  # fmt: skip
    q.close()
