"""Flow control (DESIGN 11) on every backend: uniqueness, debounce, rate and concurrency
limits, limit_by, cancellation while held, RateLimited, progress; and bad input.

The cross-process proofs (3 worker processes, a ledger, a SIGKILL) are in
tests/chaos/test_limits_processes.py.
"""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from typing import Any

import pytest

from taskqueue import RateLimited, TaskQueue, TaskStatus, current_task
from taskqueue.errors import RateLimited as RateLimitedFromErrors
from tests.conftest import wait_until


def test_rate_limited_is_exported_from_both_places() -> None:
    assert RateLimited is RateLimitedFromErrors


# -- uniqueness ------------------------------------------------------------------------------
def test_equal_calls_join_the_live_task_and_a_final_one_releases_the_key(any_queue: TaskQueue) -> None:
    q = any_queue

    @q.task(unique_for=60)
    def send(user: int, kind: str = "welcome") -> str:
        return f"{kind}:{user}"

    first = send.delay(1)
    again = send.delay(1, kind="welcome")  # the same call, spelled differently
    other = send.delay(2)
    assert not first.deduplicated and again.deduplicated and not other.deduplicated
    assert again.id == first.id != other.id
    q.start_workers(2)
    assert first.result(timeout=10) == "welcome:1"
    after = send.delay(1)  # the first is final: the key is released
    assert not after.deduplicated and after.id != first.id
    assert after.result(timeout=10) == "welcome:1"


def test_unique_key_with_unique_for_on_apply_async(any_queue: TaskQueue) -> None:
    q = any_queue

    @q.task
    def mail(address: str, body: str) -> str:
        return body

    a = mail.apply_async(args=("a@x", "one"), unique_key="welcome:a", unique_for=3600)
    b = mail.apply_async(args=("a@x", "two"), unique_key="welcome:a", unique_for=3600)
    c = mail.apply_async(args=("a@x", "three"), unique_key="welcome:b", unique_for=3600)
    plain = mail.apply_async(args=("a@x", "four"))
    assert b.id == a.id and b.deduplicated and not c.deduplicated and not plain.deduplicated
    q.start_workers(2)
    assert [h.result(timeout=10) for h in (b, c, plain)] == ["one", "three", "four"]


def test_the_key_runs_out_after_unique_for(any_queue: TaskQueue) -> None:
    q = any_queue

    @q.task(unique_for=0.3)
    def job(x: int) -> int:
        return x

    first = job.delay(1)
    assert job.delay(1).deduplicated
    # no worker: the first is still pending, yet its key expires after 0.3 s
    later = wait_until(lambda: (h := job.delay(1)) and not h.deduplicated and h, timeout=5, interval=0.05)
    assert later.id != first.id
    assert first.status is TaskStatus.PENDING


def test_racing_threads_get_one_task(any_queue: TaskQueue) -> None:
    q = any_queue

    @q.task(unique_for=60)
    def once(x: int) -> int:
        return x

    barrier = threading.Barrier(8)
    handles: list[Any] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        h = once.delay(7)
        with lock:
            handles.append(h)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({h.id for h in handles}) == 1
    assert sorted(h.deduplicated for h in handles) == [False] + [True] * 7


def test_enqueue_many_with_equal_unique_calls_writes_one(any_queue: TaskQueue) -> None:
    q = any_queue

    @q.task(unique_for=60)
    def once(x: int) -> int:
        return x

    handles = q.enqueue_many([once.s(1), once.s(1), once.s(2)])
    assert handles[0].id == handles[1].id and handles[1].deduplicated
    assert handles[2].id != handles[0].id


# -- debounce --------------------------------------------------------------------------------
def test_ten_calls_in_the_window_run_once_with_the_last_arguments(any_queue: TaskQueue) -> None:
    q = any_queue
    runs: list[tuple[int, float]] = []

    @q.task(debounce=0.5)
    def save(version: int) -> int:
        runs.append((version, time.time()))
        return version

    q.start_workers(2)
    handles = []
    for v in range(10):
        handles.append(save.delay(v))
    last_call = time.time()
    assert len({h.id for h in handles}) == 1 and sum(h.deduplicated for h in handles) == 9
    assert handles[0].result(timeout=10) == 9
    assert [v for v, _ in runs] == [9]
    assert runs[0][1] >= last_call + 0.5 - 0.05, "it ran before a whole window after the last call"
    after = save.delay(10)  # the window's task ran: a later call starts a new window
    assert not after.deduplicated and after.result(timeout=10) == 10


# -- rate limits -------------------------------------------------------------------------------
def test_a_rate_limit_spaces_starts_and_holds_nothing_back_behind_it(any_queue: TaskQueue) -> None:
    q = any_queue
    starts: list[float] = []

    @q.task(rate_limit="10/s")
    def call_api(i: int) -> int:
        starts.append(time.time())
        return i

    @q.task
    def free() -> float:
        return time.time()

    limited = [call_api.delay(i) for i in range(10)]
    behind = free.delay()
    sent = time.time()
    q.start_workers(4)
    # the limited ones take 0.9 s of tokens; the one behind them runs at once
    assert behind.result(timeout=10) - sent < 0.5, "an unlimited task waited behind held ones"
    assert [h.result(timeout=10) for h in limited] == list(range(10))
    starts.sort()
    gaps = [b - a for a, b in pairwise(starts)]
    # one start per 100 ms; one may come half an interval early after a late one
    assert min(gaps) >= 0.05 - 0.01, gaps
    assert starts[-1] - starts[0] >= 9 * 0.1 - 0.05 - 0.02


def test_limit_by_gives_each_value_its_own_bucket(any_queue: TaskQueue) -> None:
    q = any_queue
    starts: dict[str, list[float]] = {"a": [], "b": []}

    @q.task(rate_limit="5/s", limit_by="tenant")
    def work(tenant: str, i: int) -> None:
        starts[tenant].append(time.time())

    backlog = [work.delay("a", i) for i in range(8)]  # a's backlog: 1.4 s of tokens
    b = [work.delay("b", i) for i in range(2)]
    q.start_workers(4)
    for h in b:
        h.result(timeout=10)
    # a's backlog takes 1.4 s of tokens; b's two need 0.2 s of its own
    assert max(starts["b"]) - min(starts["a"]) < 0.8, "b waited for a's tokens"
    for h in backlog:
        h.result(timeout=10)
    a = sorted(starts["a"])
    assert min(y - x for x, y in pairwise(a)) >= 0.1 - 0.01
    assert a[-1] - a[0] >= 7 * 0.2 - 0.1 - 0.02


# -- concurrency -----------------------------------------------------------------------------
def test_concurrency_caps_running_tasks_and_a_held_one_frees_no_thread(any_queue: TaskQueue) -> None:
    q = any_queue
    running, peak = [0], [0]
    lock = threading.Lock()
    gate = threading.Event()

    @q.task(concurrency=2)
    def slow(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        gate.wait(10)
        with lock:
            running[0] -= 1
        return i

    @q.task
    def quick() -> str:
        return "ok"

    handles = [slow.delay(i) for i in range(6)]
    q.start_workers(3)
    wait_until(lambda: running[0] == 2)
    # 2 threads hold slots, 4 tasks are held in Redis, the third thread is free for others
    assert quick.delay().result(timeout=5) == "ok"
    assert running[0] == 2
    gate.set()
    assert [h.result(timeout=10) for h in handles] == list(range(6))
    assert peak[0] == 2


def test_a_task_cancelled_while_held_never_runs(any_queue: TaskQueue) -> None:
    q = any_queue
    ran: list[str] = []
    gate = threading.Event()

    @q.task(concurrency=1)
    def single(tag: str) -> None:
        ran.append(tag)
        gate.wait(10)

    @q.task(rate_limit="1/m")
    def rare(tag: str) -> None:
        ran.append(tag)

    holder = single.delay("holder")
    held = single.delay("held")
    q.start_workers(2)
    wait_until(lambda: ran == ["holder"])
    wait_until(
        lambda: held.record().status == "PENDING" and q.broker.queue_lengths(["default"])["default"] == 0
    )
    assert held.cancel() is True
    first, second = rare.delay("first"), rare.delay("second")
    wait_until(lambda: "first" in ran)
    wait_until(lambda: second.status is TaskStatus.SCHEDULED)  # held for its token
    assert second.cancel() is True
    gate.set()
    holder.result(timeout=10)
    first.result(timeout=10)
    assert held.status is TaskStatus.CANCELLED and second.status is TaskStatus.CANCELLED
    after = single.delay("after")  # the slot came back, and the cancelled one was skipped
    after.result(timeout=10)
    assert ran == ["holder", "first", "after"]


# -- RateLimited -------------------------------------------------------------------------------
def test_rate_limited_sends_the_attempt_back_without_counting_it(any_queue: TaskQueue) -> None:
    q = any_queue
    calls: list[float] = []

    @q.task(max_retries=0)
    def upstream() -> int:
        calls.append(time.time())
        if len(calls) < 3:
            raise RateLimited(delay=0.2)
        return current_task().attempt

    q.start_workers(2)
    h = upstream.delay()
    assert h.result(timeout=10) == 1  # max_retries=0, yet it ran three times: none counted
    assert h.attempts == 1
    actions = [e.get("action") for e in h.history]
    assert actions == ["ratelimited", "ratelimited"]
    assert all(b - a >= 0.2 - 0.02 for a, b in pairwise(calls))


# -- progress ----------------------------------------------------------------------------------
def test_progress_is_throttled_and_its_last_value_kept(any_queue: TaskQueue) -> None:
    q = any_queue
    reached = threading.Event()
    go_on = threading.Event()

    @q.task
    def crunch(n: int) -> int:
        ctx = current_task()
        for i in range(n):
            ctx.progress(i + 1, n, f"step {i + 1}")
        reached.set()
        go_on.wait(10)
        ctx.progress(n, n, "done")
        return n

    q.start_workers(1)
    h = crunch.delay(5000)
    assert h.progress is None or h.progress.total == 5000
    reached.wait(10)
    p = wait_until(lambda: (p := h.progress) and p.done == 5000 and p)
    assert p.total == 5000 and p.message == "step 5000" and p.fraction == 1.0
    go_on.set()
    h.result(timeout=10)
    assert h.progress.message == "done"


def test_progress_writes_are_a_few_a_second(queue: TaskQueue, redis_client: Any) -> None:
    q = queue
    done = threading.Event()

    @q.task
    def busy() -> None:
        ctx = current_task()
        end = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < end:
            i += 1
            ctx.progress(i)
        done.set()

    q.start_workers(1)
    monitor = redis_client.monitor()
    h = busy.delay()
    writes = 0
    with monitor as m:
        for command in m.listen():
            words = command["command"].split(" ", 3)
            if words[0] == "HSET" and words[1] == f"{{taskqueue}}:task:{h.id}" and words[2] == "progress":
                writes += 1
            if done.is_set():
                break
    h.result(timeout=10)
    assert 1 <= writes <= 8, writes  # ~1 s at 4 writes a second, plus the last value


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": "10/d"}, "rate_limit must be a string 'N/s', 'N/m' or 'N/h'"),
        ({"rate_limit": "0/s"}, "N >= 1"),
        ({"rate_limit": 10}, "rate_limit must be a string"),
        ({"concurrency": 0}, "concurrency must be an int >= 1"),
        ({"concurrency": True}, "concurrency must be an int >= 1"),
        ({"unique_for": -1}, "unique_for must be a number of seconds > 0"),
        ({"debounce": "5"}, "debounce must be a number of seconds > 0"),
        ({"unique_for": 5, "debounce": 5}, "pass unique_for or debounce, not both"),
        ({"limit_by": "tenant"}, "needs rate_limit= or concurrency="),
        ({"rate_limit": "1/s", "limit_by": "nope"}, "limit_by='nope' is not one of its arguments (tenant)"),
    ],
)
def test_bad_task_options_are_refused_naming_them(
    queue: TaskQueue, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):

        @queue.task(**options)
        def job(tenant: str) -> None: ...


def test_bad_call_options_are_refused_naming_them(queue: TaskQueue) -> None:
    @queue.task
    def job(x: int) -> None: ...

    @queue.task(debounce=1)
    def later(x: int) -> None: ...

    with pytest.raises(ValueError, match="unique_key='k' needs unique_for="):
        job.apply_async(args=(1,), unique_key="k")
    with pytest.raises(ValueError, match="unique_key must be a non-empty string"):
        job.apply_async(args=(1,), unique_key="", unique_for=5)
    with pytest.raises(ValueError, match="unique_for must be a number of seconds > 0"):
        job.apply_async(args=(1,), unique_for=0)
    with pytest.raises(ValueError, match="is debounced: it runs 1 s after the last call"):
        later.apply_async(args=(1,), delay=5)
    with pytest.raises(ValueError, match=r"RateLimited\(delay=...\) takes a number of seconds >= 0"):
        RateLimited(delay=-1)
    assert queue.broker.queue_lengths(["default"])["default"] == 0


def test_bad_progress_values_raise_in_the_task(queue: TaskQueue) -> None:
    @queue.task(max_retries=0)
    def bad(kind: str) -> None:
        args = {"done": (-1,), "total": (1, 0), "message": (1, None, 5)}[kind]
        current_task().progress(*args)

    queue.start_workers(1)
    for kind, text in [("done", "done=...) takes a number >= 0"), ("total", "total=...) takes a number > 0")]:
        with pytest.raises(Exception, match=text.replace("(", r"\(").replace(")", r"\)")):
            bad.delay(kind).result(timeout=10)
    with pytest.raises(Exception, match=r"message=...\) takes a string"):
        bad.delay("message").result(timeout=10)


def test_status_and_the_map_bar_show_reported_progress(queue: TaskQueue) -> None:
    from taskqueue.cli.status import gather_status, render_status
    from taskqueue.mapping import _Outcomes

    q = queue
    go_on = threading.Event()

    @q.task
    def part(i: int) -> int:
        current_task().progress(1, 4, f"item {i}")
        go_on.wait(10)
        return i

    q.start_workers(2)
    handles = [part.delay(i) for i in range(2)]
    outcomes = _Outcomes(q.broker, [h.id for h in handles], "part", False)
    wait_until(lambda: outcomes.partial(q.broker) == 0.5)  # two items a quarter done each
    rows = wait_until(lambda: [r for r in gather_status(q)["running"] if r.get("progress")])
    assert {r["progress"] for r in rows} <= {"1/4 item 0", "1/4 item 1"}
    assert "1/4 item" in render_status(gather_status(q))
    go_on.set()
    assert [h.result(timeout=10) for h in handles] == [0, 1]
