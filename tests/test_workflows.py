"""Workflows (DESIGN 10): chain, group, chord and depends_on, on every backend.

``any_queue`` runs each test on the real server, on memory:// and (slow, ``-k
cluster``) on a real 3-master Redis Cluster, where the tasks below sit in
queues of different slot groups on different masters.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from taskqueue import (
    ChainHandle,
    ChordHandle,
    GroupHandle,
    TaskFailed,
    TaskHandle,
    TaskQueue,
    TaskStatus,
    chain,
    chord,
    group,
)

from .conftest import wait_until


def tasks(q: TaskQueue) -> dict[str, Any]:
    """Tasks spread over the three default queues (three slot groups on a cluster)."""

    @q.task(queue="high")
    def add(x: int, y: int) -> int:
        return x + y

    @q.task(queue="low")
    def mul(x: int, y: int) -> int:
        return x * y

    @q.task
    def total(xs: list[int], extra: int = 0) -> int:
        return sum(xs) + extra

    @q.task
    def ident(x: Any) -> Any:
        return x

    @q.task(queue="low", max_retries=0)
    def boom(x: int = 0) -> int:
        raise ValueError(f"boom {x}")

    return {"add": add, "mul": mul, "total": total, "ident": ident, "boom": boom}


def test_a_chain_passes_each_result_first(any_queue: TaskQueue) -> None:
    t = tasks(any_queue)
    with any_queue.running(workers=4):
        h = chain(t["add"].s(1, 2), t["mul"].s(10), t["add"].s(5)).delay()
        assert isinstance(h, ChainHandle)
        assert h.result(timeout=20) == 35
        assert [x.status for x in h.tasks] == [TaskStatus.SUCCEEDED] * 3
        assert h.progress == (3, 3)


def test_a_group_returns_results_in_member_order(any_queue: TaskQueue) -> None:
    t = tasks(any_queue)
    with any_queue.running(workers=4):
        g = group(t["mul"].s(i, i) if i % 2 else t["add"].s(i, i) for i in range(8)).delay()
        assert isinstance(g, GroupHandle)
        assert g.results(timeout=20) == [i * i if i % 2 else 2 * i for i in range(8)]
        assert len(g.handles) == 8 and all(isinstance(h, TaskHandle) for h in g.handles)
        assert g.progress == (8, 8)


def test_a_chord_calls_back_with_every_result_before_its_own_arguments(any_queue: TaskQueue) -> None:
    t = tasks(any_queue)
    with any_queue.running(workers=4):
        c = chord([t["add"].s(i, 1) for i in range(6)], t["total"].s(extra=100)).delay()
        assert isinstance(c, ChordHandle)
        assert c.result(timeout=20) == sum(range(1, 7)) + 100
        assert c.header.results(timeout=1) == list(range(1, 7))


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        # a chain holding a group (the next step gets the list) and a chord
        (lambda t: chain(t["add"].s(1, 1), group(t["mul"].s(3), t["add"].s(4)), t["total"].s()), 6 + 6),
        (
            lambda t: chain(
                t["add"].s(1, 1), chord([t["mul"].s(2), t["mul"].s(3)], t["total"].s()), t["add"].s(1)
            ),
            11,
        ),
        # a group holding chains, one of them with a group inside: nested two deep
        (
            lambda t: group(
                chain(t["add"].s(1, 2), t["mul"].s(2)),
                chain(t["add"].s(0, 1), group(t["add"].s(1), t["mul"].s(5))),
            ),
            [6, [2, 5]],
        ),
        # a chord whose header holds a chain, and whose body is a chain
        (
            lambda t: chord(
                [chain(t["add"].s(1, 1), t["mul"].s(5)), t["add"].s(2, 2)],
                chain(t["total"].s(), t["mul"].s(2)),
            ),
            28,
        ),
        # a chain that starts with a group: the second step gets the list
        (lambda t: chain(group(t["add"].s(1, 1), t["add"].s(2, 2)), t["total"].s(extra=1)), 7),
    ],
    ids=["chain-group", "chain-chord", "group-chains-nested", "chord-chain-body", "chain-starts-with-group"],
)
def test_every_shape_nested_two_deep(any_queue: TaskQueue, build: Any, expected: Any) -> None:
    t = tasks(any_queue)
    with any_queue.running(workers=4):
        assert build(t).delay().result(timeout=30) == expected


def test_q_enqueue_and_apply_async_take_queue_and_delay(any_queue: TaskQueue) -> None:
    t = tasks(any_queue)
    workflow = chain(t["ident"].s(7), t["ident"].s())
    h = any_queue.enqueue(workflow, queue="low", delay=60)
    first, second = h.tasks
    assert first.status == TaskStatus.SCHEDULED and second.status == TaskStatus.WAITING
    assert first.record().queue == "low" and second.record().queue == "low"
    assert h.cancel() == 2
    assert first.status == second.status == TaskStatus.CANCELLED
    with any_queue.running(workers=2):
        assert chain(t["ident"].s(1), t["ident"].s()).apply_async(queue="high").result(timeout=20) == 1


def test_a_failed_member_cancels_the_callback_which_names_it(any_queue: TaskQueue) -> None:
    t = tasks(any_queue)
    with any_queue.running(workers=4):
        c = chord([t["add"].s(1, 1), t["boom"].s(3), t["add"].s(2, 2)], t["total"].s()).delay()
        with pytest.raises(TaskFailed) as caught:
            c.result(timeout=20)
        bad = c.header.handles[1]
        assert caught.value.task_id == bad.id and "boom 3" in str(caught.value)
        callback = c.body
        wait_until(lambda: callback.status == TaskStatus.CANCELLED)
        record = callback.record()
        assert bad.id in record.reason and "ended DEAD" in record.reason and record.cause == bad.id
        assert "boom 3" in record.reason
        assert record.attempts == 0  # it never ran
        with pytest.raises(TaskFailed) as member_error:
            c.header.results(timeout=5)
        assert member_error.value.task_id == bad.id


def test_cancel_spreads_down_a_chain_with_the_root_cause(any_queue: TaskQueue) -> None:
    t = tasks(any_queue)
    with any_queue.running(workers=2):
        h = chain(t["boom"].s(1), t["ident"].s(), t["ident"].s(), t["ident"].s()).delay()
        with pytest.raises(TaskFailed) as caught:
            h.result(timeout=20)
        assert caught.value.task_id == h.tasks[0].id
        for later in h.tasks[1:]:
            wait_until(lambda later=later: later.status == TaskStatus.CANCELLED)
            assert later.record().cause == h.tasks[0].id
        assert "dependency" in h.tasks[3].record().reason


def test_dependency_failure_policies(any_queue: TaskQueue) -> None:
    t = tasks(any_queue)
    with any_queue.running(workers=4):
        bad = t["boom"].delay(9)
        good = t["add"].delay(1, 1)
        run = t["ident"].apply_async(args=("ran",), depends_on=[bad, good], on_dependency_failure="run")
        fail = t["ident"].apply_async(args=("x",), depends_on=[bad.id], on_dependency_failure="fail")
        cancel = t["ident"].apply_async(args=("x",), depends_on=[bad])
        after_fail = t["ident"].apply_async(args=("y",), depends_on=[fail], on_dependency_failure="run")
        assert run.result(timeout=20) == "ran"
        with pytest.raises(TaskFailed):
            fail.result(timeout=20)
        assert fail.status == TaskStatus.FAILED and bad.id in fail.record().reason
        with pytest.raises(TaskFailed):
            cancel.result(timeout=20)
        assert cancel.status == TaskStatus.CANCELLED
        assert after_fail.result(timeout=20) == "y"  # "run" follows a dependency that failed by policy


def test_depends_on_waits_and_shows_both_directions(any_queue: TaskQueue) -> None:
    t = tasks(any_queue)
    first = t["add"].delay(1, 2)
    g = group(t["add"].s(1, 1), t["mul"].s(2, 2)).delay()
    after = t["ident"].apply_async(args=("done",), depends_on=[first, g])
    assert after.status == TaskStatus.WAITING
    assert sorted(after.record().dependencies) == sorted([first.id, *(h.id for h in g.tasks)])
    assert any_queue.broker.dependents(first.id) == [after.id]
    with any_queue.running(workers=2):
        assert after.result(timeout=20) == "done"
    # a dependency that is final already: the dependent is released at once
    with any_queue.running(workers=2):
        assert t["ident"].apply_async(args=(5,), depends_on=[first]).result(timeout=20) == 5
        late = t["ident"].apply_async(args=(5,), depends_on=[after, g.tasks[0].id])
        assert late.result(timeout=20) == 5


def test_cancelling_a_group_cancels_what_has_not_started(any_queue: TaskQueue) -> None:
    t = tasks(any_queue)
    c = chord([t["add"].s(i, i) for i in range(5)], t["total"].s()).delay()
    assert c.body.status == TaskStatus.WAITING
    assert c.cancel() == 6
    assert all(h.status == TaskStatus.CANCELLED for h in c.tasks)
    with any_queue.running(workers=2):
        with pytest.raises(TaskFailed):
            c.result(timeout=10)
        # nothing of it runs: a plain task behind it finishes, the chord's do not
        assert t["add"].delay(1, 1).result(timeout=10) == 2
    assert all(h.record().attempts == 0 for h in c.tasks)


def test_retries_that_end_in_success_are_invisible(any_queue: TaskQueue) -> None:
    tries: Counter[int] = Counter()

    @any_queue.task(max_retries=3, queue="low")
    def flaky(x: int) -> int:
        tries[x] += 1
        if tries[x] < 3:
            raise RuntimeError("not yet")
        return x

    t = tasks(any_queue)
    with any_queue.running(workers=4):
        c = chord([flaky.s(i) for i in range(4)], t["total"].s()).delay()
        assert c.result(timeout=30) == 6
        assert all(tries[i] == 3 for i in range(4))
        assert c.body.record().attempts == 1


def test_a_group_of_10000_members_is_written_in_one_round_trip(
    any_queue: TaskQueue, round_trips: Counter[str]
) -> None:
    if any_queue.url.startswith("memory://"):
        pytest.skip("the argument sizes are a real server's; fakeredis interprets Lua in Python (a minute)")
    t = tasks(any_queue)
    chord([t["ident"].s(0)], t["total"].s()).delay().cancel()  # the scripts are loaded
    round_trips.clear()
    c = chord([t["ident"].s(i) for i in range(10_000)], t["total"].s()).delay()
    if not any_queue.broker.keys.cluster:  # one group of slots: one call, one round trip
        assert sum(round_trips.values()) == 1
    assert c.body.status == TaskStatus.WAITING
    assert c.progress == (0, 10_001)
    assert len(c.body.record().dependencies) == 10_000


def test_bad_input_is_refused_with_what_to_do(any_queue: TaskQueue) -> None:
    t = tasks(any_queue)
    with pytest.raises(ValueError, match="needs at least one task"):
        chain()
    with pytest.raises(ValueError, match="needs at least one task"):
        group([])
    with pytest.raises(TypeError, match=r"use .*\.s\(\.\.\.\)"):
        chain(t["add"], t["mul"].s(2))
    with pytest.raises(TypeError, match="a group holds tasks and chains"):
        group(t["add"].s(1, 2), group(t["add"].s(1, 2)))
    with pytest.raises(TypeError, match="chord's header is a group or a list"):
        chord(t["add"].s(1, 2), t["total"].s())
    with pytest.raises(TypeError, match="chord's body is a task or a chain"):
        chord([t["add"].s(1, 2)], group(t["total"].s()))
    with pytest.raises(TypeError, match="after the result it receives"):
        chain(t["add"].s(1, 2), t["add"].s(1, 2)).delay()  # add would get three arguments
    with pytest.raises(TypeError, match=r"too many positional|takes"):
        t["add"].s(1, 2, 3)
    with pytest.raises(ValueError, match="on_dependency_failure must be one of 'cancel', 'run', 'fail'"):
        t["ident"].apply_async(args=(1,), depends_on=["x"], on_dependency_failure="skip")
    with pytest.raises(TypeError, match="depends_on must be a list"):
        t["ident"].apply_async(args=(1,), depends_on="abc")
    with pytest.raises(TypeError, match=r"depends_on\[0\] must be a TaskHandle"):
        t["ident"].apply_async(args=(1,), depends_on=[42])
    with pytest.raises(ValueError, match="task nope is not in Redis"):
        t["ident"].apply_async(args=(1,), depends_on=["nope"])
    with pytest.raises(ValueError, match="eta cannot be combined with depends_on"):
        import datetime as dt

        t["ident"].apply_async(args=(1,), depends_on=["x"], eta=dt.datetime.now(dt.UTC))
    with pytest.raises(ValueError, match="not eta= or task_id="):
        any_queue.enqueue(chain(t["ident"].s(1)), task_id="x")
    with pytest.raises(TypeError, match="no queue to send it through"):
        from taskqueue import Signature

        chain(Signature(t["ident"].name, (1,))).delay()
    # nothing of the refused ones was written
    assert any_queue.broker.queue_lengths(["high", "default", "low"]) == {"high": 0, "default": 0, "low": 0}
    assert any_queue.broker.waiting_counts(["high", "default", "low"]) == {"high": 0, "default": 0, "low": 0}
