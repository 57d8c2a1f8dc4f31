"""What the broker hands back: plain records decoded from Redis replies.

The ports (``ports.py``) speak in these types, so a caller never sees a raw
reply. Decoding lives next to each record (``from_reply`` / ``from_hash``):
one place knows the field order a script returns. Nothing here talks to Redis.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskqueue.status import FINAL_STATES, as_read


# -- reply helpers ------------------------------------------------------------------
def text(value: Any) -> str:
    """A reply value (bytes, or None for nil) as text ("" for nil); undecodable bytes never raise."""
    return value.decode("utf-8", "replace") if value is not None else ""


def to_int(value: bytes | None) -> int | None:
    """A reply value as an int; None for nil, "" or anything that is not a number."""
    try:
        return int(value) if value not in (None, b"") else None
    except ValueError:
        return None


def pairs(flat: list[Any]) -> dict[bytes, bytes]:
    """A Lua HGETALL reply (field, value, field, value...) as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def counters(h: dict[bytes, bytes]) -> dict[str, int]:
    """A hash of counters, its non-numeric fields left out."""
    out = {}
    for key, value in h.items():
        number = to_int(value)
        if number is not None:
            out[text(key)] = number
    return out


def worker_info(h: Mapping[bytes, Any]) -> dict[str, Any]:
    """A worker's registry hash: what it published (JSON ``info``) plus ``heartbeat_ms``.

    A worker of another version may publish anything: unreadable info reads as empty.
    """
    try:
        info = json.loads(h.get(b"info", b"{}"))
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    info["heartbeat_ms"] = to_int(h.get(b"heartbeat_ms"))
    return info


def server_ms(reply: tuple[Any, Any] | list[Any]) -> int:
    """A TIME reply (seconds, microseconds) as epoch milliseconds."""
    return int(reply[0]) * 1000 + int(reply[1]) // 1000


# -- the worker side ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Delivery:
    """One leased task, as handed to a worker thread."""

    id: str
    payload: bytes
    signature: str
    attempt: int
    token: str
    queue: str


@dataclass(frozen=True, slots=True)
class FetchResult:
    deliveries: list[Delivery]
    now_ms: int
    #: Earliest scheduled time or lease deadline (server ms), -1 when there is none.
    next_due_ms: int
    dropped_dead: int = 0
    #: The caller's task set is not in Redis (expired, flushed): nothing was leased;
    #: publish it (a heartbeat) and fetch again.
    taskset_missing: bool = False

    @classmethod
    def from_reply(cls, reply: list[Any]) -> FetchResult:
        """Decode ``fetch.lua``'s reply: four numbers, then six fields per leased task."""
        now, next_due, dropped, missing = int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3])
        deliveries = [
            Delivery(
                id=text(reply[i]),
                payload=reply[i + 1],
                signature=text(reply[i + 2]),
                attempt=int(reply[i + 3]),
                token=text(reply[i + 4]),
                queue=text(reply[i + 5]),
            )
            for i in range(4, len(reply), 6)
        ]
        return cls(deliveries, now, next_due, dropped, bool(missing))

    def merged(self, more: FetchResult) -> FetchResult:
        """This fetch and a later one from another slot group (cluster), as one."""
        due = [d for d in (self.next_due_ms, more.next_due_ms) if d >= 0]
        return FetchResult(
            self.deliveries + more.deliveries,
            self.now_ms,
            min(due) if due else -1,
            self.dropped_dead + more.dropped_dead,
            self.taskset_missing or more.taskset_missing,
        )


# -- the producer side --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    id: str
    name: str
    queue: str
    payload: bytes
    signature: str = ""
    max_retries: int = 3
    delay_ms: int = -1
    eta_ms: int = 0
    #: Random per request: when a reply is lost and the call is repeated, the
    #: script recognises its own earlier write instead of reporting a duplicate id.
    nonce: str = field(default_factory=lambda: os.urandom(8).hex())
    #: Flow control (``taskqueue.limits``): the limits the fetch applies ('' none) and the
    #: uniqueness or debounce request ('' none), as ``_lib_limits.lua`` reads them.
    limit: str = ""
    dedup: str = ""


@dataclass(slots=True)
class TaskRecord:
    """The stored state of a task, decoded from its hash."""

    id: str
    status: str
    queue: str = ""
    name: str = ""
    attempts: int = 0
    max_retries: int = 0
    payload: bytes = b""
    result: bytes | None = None
    error: bytes | None = None
    reason: str = ""
    enqueued_ms: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    due_ms: int | None = None
    runtime_ms: int | None = None
    worker: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    #: What the task last reported with ``current_task().progress`` (JSON; "" none).
    progress: str = ""
    #: Workflows: the ids it depends on, the workflow it belongs to, the task whose
    #: failure ended it (when a dependency's failure did), and its failure policy.
    dependencies: list[str] = field(default_factory=list)
    workflow: str = ""
    cause: str = ""
    on_dependency_failure: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    @classmethod
    def from_hash(
        cls, task_id: str, h: dict[bytes, bytes], history: list[bytes] | None = None
    ) -> TaskRecord | None:
        """Decode a task hash (and its history list); None when there is no such task.

        A hash without a status is a leftover (say, only a cancel flag written after
        the record expired): it reads as no task at all.
        """
        if not h or b"status" not in h:
            return None
        return cls(
            id=task_id,
            status=as_read(text(h.get(b"status"))),
            queue=text(h.get(b"queue")),
            name=text(h.get(b"name")),
            attempts=to_int(h.get(b"attempts")) or 0,
            max_retries=to_int(h.get(b"max_retries")) or 0,
            payload=h.get(b"payload", b""),
            result=h.get(b"result"),
            error=h.get(b"error") or None,
            reason=text(h.get(b"reason")),
            enqueued_ms=to_int(h.get(b"enqueued_ms")),
            started_ms=to_int(h.get(b"started_ms")),
            finished_ms=to_int(h.get(b"finished_ms")),
            due_ms=to_int(h.get(b"due_ms")),
            runtime_ms=to_int(h.get(b"runtime_ms")),
            worker=text(h.get(b"worker")),
            history=history_entries(history or ()),
            progress=text(h.get(b"progress")),
            dependencies=_id_list(h.get(b"deps")),
            workflow=text(h.get(b"wf_id")),
            cause=text(h.get(b"wf_cause")),
            on_dependency_failure=text(h.get(b"on_dep_fail")),
        )


def _id_list(raw: bytes | None) -> list[str]:
    """A JSON list of task ids as a workflow member stores its dependencies ([] when absent)."""
    if not raw:
        return []
    try:
        ids = json.loads(raw)
    except ValueError:
        return []
    return [str(i) for i in ids] if isinstance(ids, list) else []


def history_entries(raw: Any) -> list[dict[str, Any]]:
    """A task's history list, one JSON document per event; a corrupt entry is kept, marked."""
    entries = []
    for item in raw:
        try:
            entries.append(json.loads(item))
        except ValueError:
            entries.append({"event": "unreadable", "raw": text(item)})
    return entries


# -- the scheduler side ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PromoteResult:
    """What one scheduler tick found (all times server ms)."""

    now_ms: int
    #: Scheduled tasks moved to their queue by this call.
    moved: int
    #: Earliest remaining scheduled task, -1 when none; <= now_ms when a backlog remains.
    next_scheduled_ms: int
    #: Earliest periodic run after now_ms, -1 when none.
    next_periodic_ms: int
    #: Due periodic tasks: (name, slot ms, stored JSON document).
    due_periodic: list[tuple[str, int, bytes]]

    @classmethod
    def from_reply(cls, reply: list[Any]) -> PromoteResult:
        """Decode ``promote.lua``'s reply: four numbers, then three fields per due periodic task."""
        due = [
            (text(reply[i]), int(float(reply[i + 1])), reply[i + 2] or b"") for i in range(4, len(reply), 3)
        ]
        return cls(int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3]), due)

    @classmethod
    def combined(cls, results: Sequence[PromoteResult]) -> PromoteResult:
        """One tick over several slot groups (a cluster), as one result."""

        def earliest(values: list[int]) -> int:
            present = [v for v in values if v >= 0]
            return min(present) if present else -1

        return cls(
            results[0].now_ms if results else 0,
            sum(r.moved for r in results),
            earliest([r.next_scheduled_ms for r in results]),
            earliest([r.next_periodic_ms for r in results]),
            [d for r in results for d in r.due_periodic],
        )


@dataclass(frozen=True, slots=True)
class PeriodicClaim:
    """One slot of one periodic task that a scheduler wants to claim (and enqueue)."""

    name: str
    slot_ms: int
    next_ms: int
    document: str
    run: bool
    task_id: str
    task_name: str
    queue: str
    payload: bytes
    signature: str
    max_retries: int
    #: The document stored instead of ``document`` when the task is paused (slot skipped).
    paused_document: str = ""


# -- inspection ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeadEntry:
    """A dead letter as ``snapshot`` lists it (``error`` still msgpack-encoded)."""

    id: str
    died_ms: int
    name: str
    queue: str
    reason: str
    attempts: int
    error: bytes

    @classmethod
    def from_reply(cls, e: list[Any]) -> DeadEntry:
        return cls(text(e[0]), int(e[1]), text(e[2]), text(e[3]), text(e[4]), to_int(e[5]) or 0, e[6])


@dataclass(frozen=True, slots=True)
class ScheduledEntry:
    """A task waiting for its due time (a delay, an eta or a retry)."""

    id: str
    due_ms: int
    name: str
    queue: str
    status: str
    attempts: int

    @classmethod
    def from_reply(cls, e: list[Any]) -> ScheduledEntry:
        return cls(text(e[0]), int(e[1]), text(e[2]), text(e[3]), text(e[4]), to_int(e[5]) or 0)


__all__ = [
    "Delivery",
    "FetchResult",
    "EnqueueRequest",
    "TaskRecord",
    "PromoteResult",
    "PeriodicClaim",
    "DeadEntry",
    "ScheduledEntry",
    "counters",
    "history_entries",
    "pairs",
    "server_ms",
    "text",
    "to_int",
    "worker_info",
]
