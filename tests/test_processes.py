"""``taskqueue worker --processes N``: the supervisor, with real processes and real signals.

The tasks here block on a gate (a Redis list that they wait on and leave in place), so a
test knows which worker process runs which task when it kills one, and releases them all
at once when it wants them to finish.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from taskqueue import Signature, TaskQueue
from taskqueue.cli.processes import RESTART_INITIAL, RESTART_MAX, restart_delay

from .conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent

APP = """
import os
import redis
from taskqueue import TaskQueue, TaskRegistry

q = TaskQueue.from_settings(registry=TaskRegistry())
ledger = redis.Redis.from_url(q.url)


@q.task(name="gated", max_retries=5)
def gated(i):
    ledger.rpush("ledger:started", f"{i}:{os.getpid()}")
    ledger.brpoplpush("ledger:gate", "ledger:gate", timeout=60)  # waits until the test opens it
    return i
"""

FAST_ENV = {
    "TASK_QUEUE_WORKERS__HEARTBEAT_INTERVAL": "0.2",
    "TASK_QUEUE_WORKERS__IDLE_POLL_SECONDS": "0.5",
    "TASK_QUEUE_WORKERS__SHUTDOWN_GRACE_PERIOD": "20",
    "TASK_QUEUE_WORKERS__PREFETCH": "0",
}


@pytest.fixture
def app(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> str:
    name = f"procapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    return f"{name}:q"


def supervisor(app: str, cwd: Path, redis_url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    environ = {**os.environ, **FAST_ENV, **env, "PYTHONUNBUFFERED": "1", "TASK_QUEUE_REDIS__URL": redis_url}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), environ.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "taskqueue", "worker", "--app", app, *args],
        cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


class Output:
    """What a process printed, read line by line up to what a test waits for."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []

    def until(self, pattern: str) -> re.Match[str]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        self.proc.wait(10)
        raise AssertionError(f"exited with {self.proc.returncode} before {pattern!r}:\n{''.join(self.lines)}")

    def rest(self, timeout: float = 60) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        self.lines.append(out)
        return "".join(self.lines)


def ready_pids(output: Output, count: int) -> dict[int, int]:
    """Worker process number -> pid, once each of ``count`` said it is ready."""
    pids: dict[int, int] = {}
    while len(pids) < count:
        found = output.until(r"worker process (\d+) ready \(pid (\d+)\)")
        pids[int(found[1])] = int(found[2])
    return pids


def started_by(client: redis.Redis) -> dict[int, set[int]]:
    """pid -> the task numbers it started (a task redelivered appears under two pids)."""
    seen: dict[int, set[int]] = {}
    for entry in client.lrange("ledger:started", 0, -1):
        i, pid = entry.decode().split(":")
        seen.setdefault(int(pid), set()).add(int(i))
    return seen


def gone(pids: list[int]) -> bool:
    def dead(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(dead(pid) for pid in pids)


@pytest.fixture
def producer(queue: TaskQueue) -> TaskQueue:
    queue.task(name="gated", max_retries=5)(lambda i: i)
    return queue


@pytest.fixture
def cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def test_a_worker_process_killed_is_replaced_and_no_task_is_lost(
    app: str, producer: TaskQueue, redis_client: redis.Redis, tmp_path: Path, redis_url: str, cleanup
) -> None:
    handles = producer.enqueue_many([Signature("gated", (i,)) for i in range(8)])
    proc = supervisor(app, tmp_path, redis_url, "--processes", "2", "--workers", "2")
    cleanup.append(proc)
    output = Output(proc)
    pids = ready_pids(output, 2)
    victim = pids[1]
    wait_until(lambda: len(started_by(redis_client).get(victim, ())) == 2)  # both its threads hold a task
    held = started_by(redis_client)[victim]
    os.kill(victim, signal.SIGKILL)

    found = output.until(r"worker process 1 restarted: pid (\d+)")
    replacement = int(found[1])
    assert replacement not in pids.values()
    assert f"worker process 1 (pid {victim}) was killed by SIGKILL" in "".join(output.lines)
    assert ready_pids(output, 1) == {1: replacement}
    wait_until(lambda: {w["pid"] for w in producer.broker.live_workers().values()} == {replacement, pids[2]})

    redis_client.rpush("ledger:gate", "open")
    assert [h.result(timeout=30) for h in handles] == list(range(8))  # nothing lost
    again = {r.id: r.attempts for r in producer.broker.get_tasks([handles[i].id for i in held]) if r}
    assert set(again.values()) == {2}, again  # the tasks the killed process ran were run again
    assert held <= set().union(*(v for pid, v in started_by(redis_client).items() if pid != victim))

    proc.send_signal(signal.SIGTERM)
    out = output.rest()
    assert proc.returncode == 0, out
    assert gone([replacement, pids[2]])


def test_sigterm_drains_every_process_and_leaves_none(
    app: str, producer: TaskQueue, redis_client: redis.Redis, tmp_path: Path, redis_url: str, cleanup
) -> None:
    handles = producer.enqueue_many([Signature("gated", (i,)) for i in range(6)])
    proc = supervisor(app, tmp_path, redis_url, "--processes", "2", "--workers", "1")
    cleanup.append(proc)
    output = Output(proc)
    pids = ready_pids(output, 2)
    wait_until(lambda: set(started_by(redis_client)) == set(pids.values()))  # each runs a task

    proc.send_signal(signal.SIGTERM)
    output.until(r"SIGTERM received: stopping 2 worker process\(es\)")
    # Both children drain: each says so, and none exits while its task still runs.
    output.until("SIGTERM received: finishing running tasks")
    output.until("SIGTERM received: finishing running tasks")
    assert proc.poll() is None and not gone(list(pids.values()))
    redis_client.rpush("ledger:gate", "open")
    out = output.rest()
    assert proc.returncode == 0, out
    assert out.count("worker stopped: every running task finished") == 2
    assert "supervisor stopped: every worker process finished its running tasks" in out
    assert gone(list(pids.values()))
    records = producer.broker.get_tasks([h.id for h in handles])
    statuses = {r.status for r in records if r}
    assert statuses <= {"SUCCEEDED", "PENDING"} and "SUCCEEDED" in statuses, statuses
    assert {r.attempts for r in records if r and r.status == "SUCCEEDED"} == {1}
    assert producer.broker.live_workers() == {}


def test_the_worker_processes_stop_when_the_supervisor_is_killed(
    app: str, producer: TaskQueue, tmp_path: Path, redis_url: str, cleanup
) -> None:
    proc = supervisor(app, tmp_path, redis_url, "--processes", "2", "--workers", "1")
    cleanup.append(proc)
    output = Output(proc)
    pids = ready_pids(output, 2)
    proc.kill()  # no chance to stop its children: they notice on their own
    out = output.rest()
    assert out.count("the supervisor is gone: stopping this worker process") == 2, out
    wait_until(lambda: gone(list(pids.values())))
    wait_until(lambda: producer.broker.live_workers() == {})


def test_the_processes_setting_starts_a_supervisor(
    app: str, producer: TaskQueue, tmp_path: Path, redis_url: str, cleanup
) -> None:
    proc = supervisor(app, tmp_path, redis_url, "--workers", "1", TASK_QUEUE_WORKERS__PROCESSES="2")
    cleanup.append(proc)
    output = Output(proc)
    assert len(ready_pids(output, 2)) == 2
    wait_until(lambda: len(producer.broker.live_workers()) == 2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: passed on once, so the children drain (no second SIGINT)
    out = output.rest()
    assert proc.returncode == 0, out
    assert "second SIGINT" not in out


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--processes", "0"], {}, "Invalid value for '--processes' / '-p': 0 is not in the range 1<=x<=256"),
        (["--processes", "two"], {}, "Invalid value for '--processes' / '-p': 'two' is not a valid integer"),
        (
            [],
            {"TASK_QUEUE_WORKERS__PROCESSES": "0"},
            "workers.processes = 0 (from variable TASK_QUEUE_WORKERS__PROCESSES): must be between 1 and 256",
        ),
    ],
)
def test_bad_process_counts_are_one_line_with_exit_2(
    app: str, tmp_path: Path, redis_url: str, args: list[str], env: dict[str, str], message: str
) -> None:
    proc = supervisor(app, tmp_path, redis_url, *args, **env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert message in out and "Traceback" not in out


def test_a_first_process_that_cannot_start_is_reported_once_with_its_exit_code(
    tmp_path: Path, redis_url: str
) -> None:
    proc = supervisor("no_such_module:q", tmp_path, redis_url, "--processes", "3")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert out.count("cannot import 'no_such_module'") == 1, out  # the others were never started
    assert out.strip().splitlines()[-1] == (
        "Error: worker process 1 exited with code 2 (usage or configuration): see its message above"
    )


def test_restarts_back_off_while_runs_stay_short() -> None:
    delays = [restart_delay(n) for n in range(0, 12)]
    assert delays[:4] == [RESTART_INITIAL, RESTART_INITIAL, 2 * RESTART_INITIAL, 4 * RESTART_INITIAL]
    assert delays[-1] == RESTART_MAX and delays == sorted(delays)
