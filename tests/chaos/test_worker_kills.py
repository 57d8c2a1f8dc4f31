"""Scenario 1: worker processes SIGKILLed at random, every second, and replaced."""

from __future__ import annotations

import random
import threading
import time

from .conftest import CHAOS, Ledger, Workers, check_ledger, producer, report, scaled, work

pytestmark = CHAOS


def test_random_worker_kills_lose_nothing(chaos_server, redis_client, redis_url, tmp_path) -> None:
    total = scaled(1500)
    ledger = Ledger(redis_client)
    q = producer(chaos_server.url)
    workers = Workers(chaos_server.url, ledger, redis_url, tmp_path)
    rng = random.Random(1)
    ids: list[str] = []
    # Half up front, half while the killing goes on.
    ids += [h.id for h in q.enqueue_many([work(rng.uniform(0, 40)) for _ in range(total // 2)])]
    for _ in range(4):
        workers.spawn(threads=2)
    started = time.monotonic()
    kills = 0
    feeder_done = threading.Event()

    def feed() -> None:
        for _ in range(10):
            batch = [work(rng.uniform(0, 40)) for _ in range((total - total // 2) // 10)]
            ids.extend(h.id for h in q.enqueue_many(batch))
            time.sleep(0.3)  # spread the second half over the first seconds of killing
        feeder_done.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        tick = threading.Event()
        while not (
            feeder_done.is_set() and q.broker.stats(["default"])["default"].get("processed", 0) >= len(ids)
        ):
            assert time.monotonic() - started < 60 * max(1.0, total / 1500), "the run did not finish"
            tick.wait(1.0)  # the scenario's clock: one kill per second
            workers.kill_random(rng)
            kills += 1
            workers.spawn(threads=2, wait_ready=False)
        elapsed = time.monotonic() - started
    finally:
        feeder.join()
        workers.stop_all()
    figures = check_ledger(q, ids, ledger, killed=workers.killed)
    assert kills >= 3, f"only {kills} kills: the run was too short to prove anything"
    assert figures["redelivered"] >= 1, "no kill landed mid-task"
    report("worker-kills", kills=kills, seconds=round(elapsed, 1), **figures)
    q.close()
