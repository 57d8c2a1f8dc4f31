"""Group commit: concurrent enqueues of one process share round trips, each caller
returns only once its own write is confirmed, and one caller's bad request fails only it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from taskqueue.broker.group_commit import GroupCommit
from taskqueue.errors import BrokerError

from .conftest import wait_until


def test_callers_arriving_during_a_write_share_the_next_one() -> None:
    first_started, release = threading.Event(), threading.Event()
    writes: list[list[int]] = []

    def write(items: Sequence[int]) -> list[int]:
        writes.append(list(items))
        if len(writes) == 1:
            first_started.set()
            assert release.wait(10)
        return [i * 10 for i in items]

    gc: GroupCommit[int, int] = GroupCommit(write)
    results: dict[int, list[int]] = {}

    def call(i: int) -> None:
        results[i] = gc.submit([i, i + 100])

    leader = threading.Thread(target=call, args=(0,))
    leader.start()
    assert first_started.wait(10)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 8)]
    for t in others:
        t.start()
    wait_until(lambda: len(gc._waiting) == 7)  # all seven queued behind the write in flight
    release.set()
    for t in [leader, *others]:
        t.join(10)
    assert len(writes) == 2 and sorted(writes[1]) == sorted(x for i in range(1, 8) for x in (i, i + 100))
    assert results == {i: [i * 10, (i + 100) * 10] for i in range(8)}


def test_a_shared_write_that_fails_is_retried_per_caller() -> None:
    gate = threading.Event()
    first = threading.Event()

    def write(items: Sequence[str]) -> list[str]:
        if not first.is_set():
            first.set()
            assert gate.wait(10)
        if "bad" in items:
            raise ValueError("bad item")
        return [x.upper() for x in items]

    gc: GroupCommit[str, str] = GroupCommit(write)
    out: dict[str, object] = {}

    def call(item: str) -> None:
        try:
            out[item] = gc.submit([item])
        except ValueError as exc:
            out[item] = exc

    threads = [threading.Thread(target=call, args=(x,)) for x in ("lead", "a", "bad", "b")]
    threads[0].start()
    assert first.wait(10)
    for t in threads[1:]:
        t.start()
    wait_until(lambda: len(gc._waiting) == 3)
    gate.set()
    for t in threads:
        t.join(10)
    assert out["lead"] == ["LEAD"] and out["a"] == ["A"] and out["b"] == ["B"]
    assert isinstance(out["bad"], ValueError)


def test_eight_threads_of_delay_store_every_task_before_returning(make_queue, redis_client) -> None:
    q = make_queue()

    @q.task
    def job(i):
        return i

    seen_missing: list[str] = []

    def produce(t: int) -> None:
        for i in range(100):
            h = job.delay(t * 1000 + i)
            if not redis_client.exists(q.broker.keys.task(h.id)):  # confirmed before delay() returned
                seen_missing.append(h.id)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen_missing == []
    assert redis_client.llen(q.broker.keys.queue("default")) == 800


def test_one_callers_bad_queue_key_fails_only_that_caller(make_queue, redis_client) -> None:
    q = make_queue(queues={"default": 1, "broken": 2})

    @q.task
    def job(i):
        return i

    redis_client.set(q.broker.keys.queue("broken"), "not a list")
    errors: list[BaseException] = []
    stored: list[str] = []
    barrier = threading.Barrier(6)

    def produce(queue: str) -> None:
        barrier.wait(10)
        for i in range(30):
            try:
                stored.append(job.apply_async(args=(i,), queue=queue).id)
            except BrokerError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=produce, args=("broken" if t == 0 else "default",)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(errors) == 30 and all("WRONGTYPE" in str(e) or "wrong" in str(e).lower() for e in errors)
    assert len(stored) == 150
    assert redis_client.llen(q.broker.keys.queue("default")) == 150


def test_a_waiting_caller_that_is_interrupted_leaves_no_one_waiting_for_ever(monkeypatch) -> None:
    from taskqueue.broker import group_commit

    first_started, release = threading.Event(), threading.Event()

    def write(items: Sequence[int]) -> list[int]:
        if items == [1]:
            first_started.set()
            assert release.wait(10)
        return list(items)

    gc: GroupCommit[int, int] = GroupCommit(write)
    leader = threading.Thread(target=gc.submit, args=([1],))
    leader.start()
    assert first_started.wait(10)

    class Interrupted(BaseException):
        pass

    real = threading.Lock

    class InterruptedLock:
        """The waiting caller's lock: acquired at creation, then its wait is interrupted
        just as the leader hands it the lead."""

        def __init__(self) -> None:
            self.state = real()

        def acquire(self, blocking: bool = True) -> bool:
            if blocking and not self.state.locked():
                return self.state.acquire()
            if blocking:
                release.set()  # the leader finishes and hands this caller the lead...
                wait_until(lambda: not self.state.locked())
                raise Interrupted  # ...which it never takes
            return self.state.acquire(blocking=False)

        def release(self) -> None:
            self.state.release()

        def locked(self) -> bool:
            return self.state.locked()

    class Entry(group_commit._Entry):  # type: ignore[type-arg]
        def __init__(self, items: Sequence[int]) -> None:
            super().__init__(items)
            self.wake = InterruptedLock()  # type: ignore[assignment]
            self.wake.acquire()

    monkeypatch.setattr(group_commit, "_Entry", Entry)
    try:
        gc.submit([2])
    except Interrupted:
        pass
    else:
        raise AssertionError("the wait was not interrupted")
    monkeypatch.setattr(group_commit, "_Entry", Entry.__mro__[1])
    leader.join(10)
    done: list[list[int]] = []
    caller = threading.Thread(target=lambda: done.append(gc.submit([3])))
    caller.start()
    caller.join(10)
    assert done == [[3]]  # the lead was passed on: a later caller is not stuck behind it
