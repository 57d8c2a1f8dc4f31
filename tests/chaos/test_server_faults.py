"""Scenarios 2-5: the server restarted, disconnected, paused and out of memory.

Each runs real worker processes against a server of its own and checks the
shared ledger invariants (``check_ledger``): no id lost, every extra run
explained by an attempt count and a ``lease-expired`` history entry.
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time

import pytest
import redis

from taskqueue import BrokerError, TaskStatus

from ..conftest import wait_until
from .conftest import CHAOS, Ledger, Workers, check_ledger, patience, producer, report, scaled, work

pytestmark = CHAOS


class Feeder(threading.Thread):
    """Enqueues tasks one call at a time while the chaos goes on (every call is a
    producer request that may meet the fault); collects the ids it was given."""

    def __init__(self, q, count: int, rng: random.Random, work_ms: tuple[float, float], pace: float) -> None:
        super().__init__(daemon=True)
        self.q, self.count, self.rng, self.work_ms, self.pace = q, count, rng, work_ms, pace
        self.ids: list[str] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            for i in range(self.count):
                self.ids.append(self.q.enqueue(work(self.rng.uniform(*self.work_ms))).id)
                if i % 20 == 19:
                    time.sleep(self.pace)  # spread the load over the scenario
        except BaseException as exc:
            self.errors.append(exc)


def _processed(q) -> int:
    return int(q.broker.stats(["default"])["default"].get("processed", 0))


def test_server_restarts_lose_nothing(chaos_server, redis_client, redis_url, tmp_path) -> None:
    """Three restarts: SIGTERM, SIGKILL (with appendfsync always, down 1.5 s), SIGTERM."""
    total = scaled(1500)
    ledger = Ledger(redis_client)
    q = producer(chaos_server.url)
    workers = Workers(chaos_server.url, ledger, redis_url, tmp_path)
    for _ in range(4):
        workers.spawn(threads=2)
    feeder = Feeder(q, total, random.Random(2), (0, 20), pace=0.05)
    started = time.monotonic()
    feeder.start()
    downtime = []
    try:
        for n, how in enumerate(("SIGTERM", "SIGKILL", "SIGTERM"), start=1):
            wait_until(lambda n=n: _processed(q) >= total * n // 4, timeout=patience(120))
            if how == "SIGKILL":
                # With every write fsynced before it is answered, even a crash of the
                # server loses nothing that was acknowledged.
                redis.Redis(unix_socket_path=chaos_server.socket_path).config_set("appendfsync", "always")
                down = time.monotonic()
                chaos_server.kill()
                # Down for over twice the lease: running attempts lose their leases.
                threading.Event().wait(1.5)
            else:
                down = time.monotonic()
                chaos_server.stop()
            chaos_server.start()
            downtime.append(round(time.monotonic() - down, 2))
        feeder.join(patience(120))
        assert not feeder.errors, feeder.errors
        wait_until(lambda: _processed(q) >= total, timeout=patience(120))
        elapsed = time.monotonic() - started
    finally:
        workers.stop_all()
    figures = check_ledger(q, feeder.ids, ledger)
    assert ledger.overlaps() == []
    report("server-restarts", restarts=3, downtime_s=downtime, seconds=round(elapsed, 1), **figures)
    q.close()


def test_killed_connections_workers_resume_by_themselves(
    chaos_server, redis_client, redis_url, tmp_path
) -> None:
    """CLIENT KILL TYPE normal every 0.2 s: the Celery 'stops consuming after a reconnect' failure."""
    total = scaled(1000)
    ledger = Ledger(redis_client)
    q = producer(chaos_server.url)
    admin = redis.Redis(unix_socket_path=chaos_server.socket_path)
    workers = Workers(chaos_server.url, ledger, redis_url, tmp_path)
    for _ in range(4):
        workers.spawn(threads=2)
    feeder = Feeder(q, total, random.Random(3), (0, 20), pace=0.05)
    started = time.monotonic()
    feeder.start()
    kills = killed_connections = 0
    stop_killing = threading.Event()
    try:
        while (feeder.is_alive() or _processed(q) < total) and not feeder.errors:
            assert time.monotonic() - started < patience(90), "workers stopped consuming"
            killed_connections += admin.client_kill_filter(_type="normal")
            kills += 1
            stop_killing.wait(0.2)
        feeder.join()
        assert not feeder.errors, feeder.errors
        elapsed = time.monotonic() - started
        # The killing has stopped: fresh work is still picked up by every process, with no help.
        wait_until(lambda: len(q.broker.live_workers()) == 4, timeout=10)
        late = [q.enqueue(work(0)) for _ in range(50)]
        for h in late:
            h.result(timeout=20)
        serving = {h.result(timeout=1)["pid"] for h in late}
    finally:
        workers.stop_all()
    figures = check_ledger(q, feeder.ids + [h.id for h in late], ledger)
    assert kills >= 10 and killed_connections >= 10 * 4
    report(
        "client-kill", kill_rounds=kills, connections_killed=killed_connections,
        processes_serving_after=len(serving), seconds=round(elapsed, 1), **figures,
    )  # fmt: skip
    q.close()


def test_a_paused_server_never_lets_a_task_run_twice_at_once(
    chaos_server, redis_client, redis_url, tmp_path
) -> None:
    """SIGSTOP the server for longer than the lease while tasks run, then SIGCONT.

    The lease holders cannot renew; before the server could hand the task to
    someone else, each holder stops its attempt (its lease is lost), so that
    the next attempt never overlaps it (the flock in the task checks that).
    """
    rounds = min(10, scaled(2))
    ledger = Ledger(redis_client)
    q = producer(chaos_server.url)
    # Heartbeats every 0.5 s: a 1.5 s lease, given up locally 0.25 s before it
    # ends, a margin that a loaded 2-core machine still keeps.
    workers = Workers(chaos_server.url, ledger, redis_url, tmp_path, {"workers": {"heartbeat_interval": 0.5}})
    for _ in range(2):
        workers.spawn(threads=4)
    rng = random.Random(4)
    stall = 2 * 1.5 + 1.0  # over twice the lease, and longer than the socket timeout (1 s)
    ids: list[str] = []
    started = time.monotonic()
    try:
        for _ in range(rounds):
            # Four tasks that outlast the stall, and four idle threads ready to take
            # them again: an attempt not stopped in time would overlap the next one.
            batch = [h.id for h in q.enqueue_many([work(rng.uniform(4500, 5500)) for _ in range(4)])]
            ids += batch
            wait_until(lambda batch=batch: all(i in ledger.starts() for i in batch))
            chaos_server.process.send_signal(signal.SIGSTOP)
            threading.Event().wait(stall)  # the fault itself lasts this long
            chaos_server.process.send_signal(signal.SIGCONT)
            expected = len(ids)
            wait_until(lambda expected=expected: _processed(q) >= expected, timeout=patience(60))
        elapsed = time.monotonic() - started
    finally:
        chaos_server.process.send_signal(signal.SIGCONT)
        workers.stop_all()
    assert ledger.overlaps() == [], f"runs of one task overlapped: {ledger.overlaps()}"
    figures = check_ledger(q, ids, ledger)
    assert figures["redelivered"] >= 1, "no lease expired: the stall proved nothing"
    logs = workers.log_text()
    report(
        "server-paused", pauses=rounds, stall_s=stall, seconds=round(elapsed, 1),
        attempts_stopped=len(re.findall("lost its lease", logs)), **figures,
    )  # fmt: skip
    q.close()


def test_a_stalled_lease_holder_cannot_overwrite_the_newer_outcome(
    chaos_server, redis_client, redis_url, tmp_path
) -> None:
    """Fencing end to end: the holder is frozen (SIGSTOP) past its lease; another
    process runs the task again and stores its result; the holder wakes up,
    finishes (the task ignores every interrupt) and tries to store its own."""
    ledger = Ledger(redis_client)
    q = producer(chaos_server.url)
    workers = Workers(chaos_server.url, ledger, redis_url, tmp_path)
    a, b = workers.spawn(threads=1), workers.spawn(threads=1)
    handle = q.enqueue(work(800, "swallow"))
    first = wait_until(lambda: ledger.starts().get(handle.id))[0]
    holder, other = (a, b) if first.pid == a.pid else (b, a)
    holder.send_signal(signal.SIGSTOP)
    try:
        outcome = handle.result(timeout=patience(30))
        assert outcome == {"attempt": 2, "pid": other.pid}
        stored = handle.record()
    finally:
        holder.send_signal(signal.SIGCONT)
    try:
        # The holder finishes attempt 1 and answers, late.
        wait_until(lambda: any(r.attempt == 1 for r in ledger.ends().get(handle.id, [])), timeout=20)
        try:
            wait_until(lambda: "outcome of attempt 1 discarded" in workers.log_text(), timeout=20)
        except AssertionError:
            raise AssertionError(workers.log_text()) from None
    finally:
        workers.stop_all()
    after = handle.record()
    assert (after.status, after.attempts, after.result, after.finished_ms) == (
        "SUCCEEDED", 2, stored.result, stored.finished_ms,
    )  # fmt: skip
    assert handle.result(timeout=1) == {"attempt": 2, "pid": other.pid}
    report("stalled-holder-fenced", late_answer_discarded=True)
    q.close()


def test_memory_pressure_refuses_producers_and_evicts_nothing(
    chaos_server, redis_client, redis_url, tmp_path
) -> None:
    q = producer(chaos_server.url, redis={"retry_attempts": 2, "retry_max_seconds": 1})
    admin = redis.Redis(unix_socket_path=chaos_server.socket_path)
    assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    headroom = scaled(2) * 1_000_000
    admin.config_set("maxmemory", admin.info("memory")["used_memory"] + headroom)
    padding = "x" * 10_000
    handles = []
    with pytest.raises(BrokerError) as refused:
        for _ in range(10 * headroom // len(padding)):
            handles.append(q.enqueue(work(0, "python", padding)))
    assert "out of memory" in str(refused.value) and "noeviction" in str(refused.value)
    # Nothing that was accepted was evicted.
    assert q.pending("default") == {"default": len(handles)}
    assert all(r is not None and r.status == "PENDING" for r in q.broker.get_tasks([h.id for h in handles]))
    assert admin.info("stats")["evicted_keys"] == 0
    # Workers started while memory is still full do not lose a task either...
    ledger = Ledger(redis_client)
    workers = Workers(chaos_server.url, ledger, redis_url, tmp_path)
    try:
        for _ in range(2):
            workers.spawn(threads=2)
        wait_until(lambda: len(ledger.starts()) >= 20, timeout=patience(30))
        # ...and once memory is freed, everything completes.
        admin.config_set("maxmemory", 0)
        for h in handles:
            h.result(timeout=patience(60))
    finally:
        workers.stop_all()
    figures = check_ledger(q, [h.id for h in handles], ledger)
    assert admin.info("stats")["evicted_keys"] == 0
    assert all(h.status is TaskStatus.SUCCEEDED for h in handles)
    report("maxmemory", accepted_before_refusal=len(handles), **figures)
    q.close()
