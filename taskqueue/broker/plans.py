"""What a workflow asks the broker to write: its members and the edges between them.

``taskqueue.workflow`` compiles a chain, group or chord (or one task's
``depends_on``) into a ``WorkflowPlan``; ``Dependencies.enqueue_workflow``
writes it. Nothing here talks to Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from taskqueue.broker.records import EnqueueRequest, text, to_int

#: What a dependent does when a dependency ends FAILED, DEAD or CANCELLED (DESIGN 10).
POLICIES = ("cancel", "run", "fail")


@dataclass(frozen=True, slots=True)
class Edge:
    """One dependency of a member: the task it waits for, the index of that task's result
    among the member's inputs, and whether the member takes that result at all."""

    task_id: str
    index: int = 0
    wants: bool = False


@dataclass(frozen=True, slots=True)
class Member:
    """One task of a workflow: its request, what it waits for, its failure policy."""

    request: EnqueueRequest
    after: tuple[Edge, ...] = ()
    policy: str = "cancel"


@dataclass(frozen=True, slots=True)
class WorkflowPlan:
    """A whole workflow, written all or nothing (per slot group on a cluster, see
    ``broker/dependencies.py``). ``kind``: chain, group, chord, or task (``depends_on``);
    ``record``: whether a workflow record is kept for readers (not for a lone task)."""

    id: str
    kind: str
    members: tuple[Member, ...]
    record: bool = True


@dataclass(slots=True)
class WorkflowRecord:
    """A stored workflow: what it is and which tasks it holds, in order."""

    id: str
    kind: str
    created_ms: int | None
    members: list[tuple[str, str]] = field(default_factory=list)  # (task id, queue)

    @classmethod
    def from_hash(cls, workflow_id: str, h: dict[bytes, Any]) -> WorkflowRecord | None:
        if not h or b"kind" not in h:
            return None
        try:
            members = [(str(i), str(q)) for i, q in json.loads(h.get(b"members", b"[]"))]
        except (ValueError, TypeError):
            members = []
        return cls(workflow_id, text(h.get(b"kind")), to_int(h.get(b"created_ms")), members)


__all__ = ["POLICIES", "Edge", "Member", "WorkflowPlan", "WorkflowRecord"]
