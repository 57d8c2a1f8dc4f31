"""From a workflow to what the broker writes: members, edges, inputs, and the handles.

Every node compiles to its *tails*, the members whose results make up its result,
and a *shape* that says how: a task's shape is ``0`` (its one result), a group's a
list of its members' shapes (compacted to ``{"range": [start, count]}`` when flat).
A member that follows a node depends on that node's tails and gets, in its envelope,
``options["inputs"] = {"n": len(tails), "shape": shape}``: the worker reads the
``n`` results stored for it and puts the value the shape builds before its own
arguments (``taskqueue.workflow.inputs``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from taskqueue.broker.plans import POLICIES, Edge, Member, WorkflowPlan
from taskqueue.broker.records import EnqueueRequest
from taskqueue.handle import TaskHandle
from taskqueue.task import Signature, Task
from taskqueue.workflow.canvas import Workflow, chain, chord, group
from taskqueue.workflow.handles import ChainHandle, ChordHandle, GroupHandle, WorkflowHandle

#: Builds one member's request: (item, queue, delay, extra envelope options, task id) -> request.
Build = Callable[[Any, str | None, float | timedelta | None, dict[str, Any], str], EnqueueRequest]
#: Makes a handle for a task id and name.
MakeHandle = Callable[[str, str], TaskHandle]


@dataclass
class _Up:
    """What a node hands the step after it: its tails (member indexes) and their shape."""

    tails: list[int]
    shape: Any


@dataclass
class _Pending:
    item: Any
    up: _Up | None


def shift(shape: Any, offset: int) -> Any:
    """``shape`` with every input index moved by ``offset``."""
    if isinstance(shape, int):
        return shape + offset
    if isinstance(shape, dict):
        start, count = shape["range"]
        return {"range": [start + offset, count]}
    return [shift(s, offset) for s in shape]


def _compact(shapes: list[Any]) -> Any:
    if shapes and all(s == i for i, s in enumerate(shapes)):
        return {"range": [0, len(shapes)]}
    return shapes


class Compiler:
    """Compiles one workflow (see the module docstring)."""

    def __init__(self, build: Build, make_handle: MakeHandle, queue: str | None, delay: Any) -> None:
        self.build = build
        self.make_handle = make_handle
        self.queue = queue
        self.delay = delay
        self.pending: list[_Pending] = []
        self.ids: list[str] = []

    def compile(self, workflow: Workflow) -> tuple[WorkflowPlan, WorkflowHandle]:
        _, shape_handle = self._node(workflow, None)
        members: list[Member] = []
        handles: list[TaskHandle] = []
        for i, p in enumerate(self.pending):
            extra: dict[str, Any] = {}
            after: tuple[Edge, ...] = ()
            if p.up is not None:
                extra["inputs"] = {"n": len(p.up.tails), "shape": p.up.shape}
                after = tuple(Edge(self.ids[t], j, True) for j, t in enumerate(p.up.tails))
            # the workflow's delay holds back the tasks it starts with; a later member's own
            # delay counts from when its dependencies are done
            delay = self.delay if p.up is None else None
            request = self.build(p.item, self.queue, delay, extra, self.ids[i])
            members.append(Member(request, after))
            handles.append(self.make_handle(request.id, request.name))
        handle = shape_handle(handles)
        return WorkflowPlan(handle.id, workflow.kind, tuple(members)), handle

    def _node(self, node: Any, up: _Up | None) -> tuple[_Up, Callable[[list[TaskHandle]], Any]]:
        """Compile ``node`` after ``up``; returns its tails and a function that makes its
        handle once the members' handles exist."""
        if isinstance(node, (Signature, Task)):
            index = len(self.pending)
            self.pending.append(_Pending(node, up))
            self.ids.append(os.urandom(16).hex())
            return _Up([index], 0), lambda hs: hs[index]
        if isinstance(node, chain):
            makers = []
            last = up
            for step in node.tasks:
                last, make = self._node(step, last)
                makers.append(make)
            assert last is not None  # a chain has at least one step
            return last, self._workflow_maker(ChainHandle, "chain", makers, last)
        if isinstance(node, group):
            tails: list[int] = []
            shapes: list[Any] = []
            makers = []
            for member in node.tasks:
                got, make = self._node(member, up)
                shapes.append(shift(got.shape, len(tails)))
                tails += got.tails
                makers.append(make)
            result = _Up(tails, _compact(shapes))
            return result, self._workflow_maker(GroupHandle, "group", makers, result)
        if isinstance(node, chord):
            header_up, header = self._node(node.header, up)
            body_up, body = self._node(node.body, header_up)
            return body_up, self._workflow_maker(ChordHandle, "chord", [header, body], body_up)
        raise TypeError(f"not a step of a workflow: {node!r}")

    def _workflow_maker(self, cls: type[WorkflowHandle], kind: str, makers: list[Any], up: _Up) -> Any:
        wf_id = os.urandom(16).hex()

        def make(hs: list[TaskHandle]) -> WorkflowHandle:
            parts = [m(hs) for m in makers]
            tasks: list[TaskHandle] = []
            for part in parts:
                tasks += part.tasks if isinstance(part, WorkflowHandle) else [part]
            handle = cls(hs[0].producer, wf_id, kind, parts, tasks)
            handle.tails = [hs[t] for t in up.tails]
            handle.shape = up.shape
            return handle

        return make


def dependency_ids(depends_on: Sequence[Any]) -> list[str]:
    """The task ids that ``depends_on`` names: handles of tasks or workflows, or ids."""
    if isinstance(depends_on, (str, bytes)) or not isinstance(depends_on, Sequence):
        raise TypeError(
            f"depends_on must be a list of handles or task ids, got {type(depends_on).__name__}: "
            "depends_on=[h1, h2]"
        )
    ids: list[str] = []
    for i, dep in enumerate(depends_on):
        if isinstance(dep, WorkflowHandle):
            ids += [t.id for t in dep.tails]
        elif isinstance(dep, TaskHandle):
            ids.append(dep.id)
        elif isinstance(dep, str) and dep:
            ids.append(dep)
        else:
            raise TypeError(
                f"depends_on[{i}] must be a TaskHandle, a workflow handle or a task id (str), got {dep!r}"
            )
    return list(dict.fromkeys(ids))


def check_policy(policy: Any) -> str:
    if policy not in POLICIES:
        raise ValueError(
            f"on_dependency_failure must be one of {', '.join(repr(p) for p in POLICIES)}, got {policy!r}"
        )
    return str(policy)


__all__ = ["Compiler", "check_policy", "dependency_ids", "shift"]
