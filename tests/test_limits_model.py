"""Uniqueness keys against a model, over random interleavings (hypothesis, real server).

Operations: enqueue a call with one of two argument values; run the oldest pending task
to success (lease and ack through the worker port); cancel a pending task; let a value's
key run out (its PX expiry, brought forward). The model: a call joins the task that owns
its key while that task is not final and the key has not run out; otherwise it makes a
new task, which takes the key.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskqueue import TaskQueue
from tests.conftest import wait_until

ops = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.sampled_from([1, 2])),
        st.tuples(st.just("run"), st.just(0)),
        st.tuples(st.just("cancel"), st.integers(0, 5)),
        st.tuples(st.just("expire"), st.sampled_from([1, 2])),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_uniqueness_follows_the_model(
    queue: TaskQueue, redis_client: Any, steps: list[tuple[str, int]]
) -> None:
    redis_client.flushdb()
    q = queue
    if "model.once" not in q.registry:

        @q.task(name="model.once", unique_for=600)
        def once(x: int) -> int:
            return x

    from taskqueue import Signature

    owner: dict[int, str | None] = {1: None, 2: None}
    pending: list[str] = []  # in enqueue order, which is the order a fetch leases them
    final: set[str] = set()
    for op, arg in steps:
        if op == "enqueue":
            h = q.enqueue(Signature("model.once", (arg,)))
            live = owner[arg] is not None and owner[arg] not in final
            if live:
                assert h.deduplicated and h.id == owner[arg], (steps, op, arg)
            else:
                assert not h.deduplicated and h.id not in pending and h.id not in final, (steps, op, arg)
                owner[arg] = h.id
                pending.append(h.id)
        elif op == "run":
            _, fetched = q.broker.ack_and_fetch([], "model-worker", ["default"], 1)
            assert fetched is not None
            if not pending:
                assert not fetched.deliveries
                continue
            (delivery,) = fetched.deliveries
            assert delivery.id == pending[0]
            stored, _ = q.broker.ack_and_fetch([(delivery, b"\xc0", 1)], "model-worker", [], 0)
            assert stored == [True]
            final.add(pending.pop(0))
        elif op == "cancel":
            if pending:
                task_id = pending.pop(arg % len(pending))
                assert q.broker.cancel(task_id) == "PENDING"
                final.add(task_id)
        else:  # expire: the key's unique_for runs out
            key = q.broker.keys.for_queue("default").unique("default", _key(q, arg))
            if redis_client.pexpire(key, 1):
                wait_until(lambda key=key: not redis_client.exists(key), timeout=2, interval=0.002)
            owner[arg] = None
    for task_id in pending:
        assert q.broker.get_task(task_id).status == "PENDING"
    for task_id in final:
        assert q.broker.get_task(task_id).status in ("SUCCEEDED", "CANCELLED")


def _key(q: TaskQueue, x: int) -> str:
    """The default uniqueness key of ``model.once(x)``, as the producer derives it."""
    from taskqueue.limits import dedup_field

    definition = q.registry.get("model.once")
    spec, _ = dedup_field(definition.limits, "model.once", "default", {"x": x}, None, None)
    return spec.split("|", 2)[2].split(" ", 1)[1]
