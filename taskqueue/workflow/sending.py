"""Sending workflows: what ``TaskSender`` does for a chain, group, chord or ``depends_on``.

The same three steps as any send (``taskqueue.producer``): every member is built
and checked first (nothing is written when one is wrong), announced to the
``task_enqueued`` hooks, then the whole plan is written by the broker's
``Dependencies`` port (all or nothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from taskqueue.broker.plans import Edge, Member, WorkflowPlan
from taskqueue.broker.ports import Dependencies
from taskqueue.handle import TaskHandle
from taskqueue.task import Signature
from taskqueue.workflow.compile import Compiler, check_policy, dependency_ids
from taskqueue.workflow.handles import WorkflowHandle

if TYPE_CHECKING:
    from taskqueue.broker.records import EnqueueRequest
    from taskqueue.producer import TaskSender
    from taskqueue.serialization import Envelope
    from taskqueue.workflow.canvas import Workflow


def _port(sender: TaskSender) -> Dependencies:
    if not isinstance(sender.producer, Dependencies):
        raise TypeError(f"{type(sender.producer).__name__} cannot store workflows (no Dependencies port)")
    return sender.producer


def _write(sender: TaskSender, plan: WorkflowPlan, envelopes: dict[str, Envelope]) -> WorkflowPlan:
    """Announce every member, then write the plan (with the requests the hooks touched)."""
    announced = sender._announce([(m.request, envelopes[m.request.id]) for m in plan.members])
    members = tuple(dataclasses.replace(m, request=r) for m, r in zip(plan.members, announced, strict=True))
    plan = dataclasses.replace(plan, members=members)
    _port(sender).enqueue_workflow(plan)
    if sender.after_send is not None:
        sender.after_send([m.request for m in members])
    return plan


def send_workflow(
    sender: TaskSender, workflow: Workflow, queue: str | None, delay: float | timedelta | None
) -> WorkflowHandle:
    """Compile and send ``workflow``; its handle."""
    _port(sender)
    envelopes: dict[str, Envelope] = {}

    def build(
        item: Any, default_queue: str | None, d: Any, extra: dict[str, Any], task_id: str
    ) -> EnqueueRequest:
        own = item.queue if isinstance(item, Signature) else None
        request, envelope = sender._build(
            item, queue=own or default_queue, delay=d, task_id=task_id, extra_options=extra
        )
        envelopes[request.id] = envelope
        return request

    compiler = Compiler(build, lambda i, n: TaskHandle(sender.producer, i, n), queue, delay)
    plan, handle = compiler.compile(workflow)
    _write(sender, plan, envelopes)
    return handle


def send_dependent(
    sender: TaskSender,
    item: Any,
    queue: str | None,
    delay: float | timedelta | None,
    eta: datetime | None,
    task_id: str | None,
    depends_on: Sequence[Any],
    policy: str,
) -> TaskHandle:
    """Send one task that waits for ``depends_on`` (``apply_async(depends_on=...)``)."""
    policy = check_policy(policy)
    ids = dependency_ids(depends_on)
    if (eta is not None or getattr(item, "eta", None) is not None) and ids:
        raise ValueError(
            "eta cannot be combined with depends_on: use delay=, counted from when the dependencies are done"
        )
    request, envelope = sender._build(item, queue=queue, delay=delay, eta=eta, task_id=task_id)
    if not ids:  # nothing to wait for: an ordinary task
        (request,), (written,) = sender._write([(request, envelope)])
        if not written:
            raise ValueError(f"a task with id {request.id!r} exists already; ids must be unique")
        return TaskHandle(sender.producer, request.id, request.name)
    if request.id in ids:
        raise ValueError(f"task {request.id} cannot depend on itself")
    member = Member(request, tuple(Edge(d) for d in ids), policy)
    _write(sender, WorkflowPlan(request.id, "task", (member,), record=False), {request.id: envelope})
    return TaskHandle(sender.producer, request.id, request.name)


__all__ = ["send_dependent", "send_workflow"]
