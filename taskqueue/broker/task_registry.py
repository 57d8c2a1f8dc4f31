"""The task registry in Redis: what a worker serves (``TaskSet``, published by its
heartbeat) and, read side, which task names live workers serve.

Workers publish their task sets with every heartbeat (``heartbeat.lua``); this
module reads what they published, for ``taskqueue tasks``, for enqueueing a
task by name from a process that does not have its code, and for showing the
tasks that wait because no live worker serves them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskqueue.broker.core import RedisCore
from taskqueue.broker.records import server_ms, text


@dataclass(frozen=True, slots=True)
class TaskSet:
    """What one worker process serves: the names of its tasks, on which queues.

    Published by the heartbeat (the task registry in Redis) and passed to every
    fetch, which leases only tasks named here and leaves the others in place for
    a worker that serves them. Processes with equal task sets share one digest,
    hence one set in Redis and one wake list.
    """

    queues: tuple[str, ...]
    #: (task name, its definition as published: JSON with its default queue and parameter names)
    definitions: tuple[tuple[str, str], ...]
    #: Names the set in Redis: a hash of the queues and the task names.
    digest: str

    @classmethod
    def of(cls, queues: Sequence[str], definitions: Mapping[str, Mapping[str, Any]]) -> TaskSet:
        docs = tuple((name, json.dumps(meta, sort_keys=True)) for name, meta in sorted(definitions.items()))
        seed = json.dumps([sorted(queues), [name for name, _ in docs]]).encode()
        return cls(tuple(queues), docs, hashlib.sha256(seed).hexdigest()[:16])

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.definitions]


@dataclass(frozen=True, slots=True)
class ServedTask:
    """A task name that at least one live worker serves, as its workers describe it."""

    name: str
    #: the task's default queue
    queue: str
    #: its parameters in Python's notation, in order: ``x``, ``y=...`` (has a default),
    #: ``/``, ``*``, ``*args``, ``**kwargs`` (see ``TaskDefinition.published``)
    params: tuple[str, ...]
    #: until when (ms, server clock) some worker's heartbeat vouches for it
    until_ms: int
    #: its retries, which a producer without the code stores with the task (None: not published)
    max_retries: int | None = None

    @classmethod
    def from_doc(cls, name: str, doc: bytes | str | None, until_ms: int) -> ServedTask:
        try:
            meta: Any = json.loads(doc) if doc else {}
        except ValueError:
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        params = meta.get("params")
        return cls(
            name=name,
            queue=str(meta.get("queue") or ""),
            params=tuple(str(p) for p in params) if isinstance(params, list) else (),
            until_ms=until_ms,
            max_retries=retries if isinstance(retries := meta.get("max_retries"), int) else None,
        )


@dataclass(frozen=True, slots=True)
class Unserved:
    """Tasks waiting because no live worker serves their name (oldest first, a few shown)."""

    count: int
    #: (task id, first seen ms) of the oldest
    oldest: tuple[tuple[str, int], ...]


class RedisTaskRegistry(RedisCore):
    def served_tasks(self) -> dict[str, ServedTask]:
        """Every task name a live worker serves, with its default queue and parameters."""

        def read() -> dict[str, ServedTask]:
            now = self.client.time()  # asked apart: a cluster pipeline refuses TIME
            members: Any = self.client.zrange(self.keys.task_names, 0, -1, withscores=True)
            live = [(text(n), int(score)) for n, score in members if score > server_ms(now)]
            docs = self.client.hmget(self.keys.task_definitions, [n for n, _ in live]) if live else []
            return {
                name: ServedTask.from_doc(name, doc, until)
                for (name, until), doc in zip(live, docs, strict=True)
            }

        return self.producer_call("reading the task registry", read)

    def unserved(self, limit: int = 10) -> Unserved:
        """How many tasks wait for a worker that serves them, and the oldest few."""

        groups = [k for k, _ in self.keys.groups(self.settings.queues_by_priority())]

        def read() -> Unserved:
            pipe = self.client.pipeline(transaction=False)
            for k in groups:
                pipe.zcard(k.unserved)
                pipe.zrange(k.unserved, 0, max(0, limit - 1), withscores=True)
            replies = pipe.execute()
            count = sum(int(c) for c in replies[0::2])
            oldest = sorted(
                ((text(i), int(s)) for group in replies[1::2] for i, s in group), key=lambda e: e[1]
            )
            return Unserved(count, tuple(oldest[: max(0, limit)]) if limit > 0 else ())

        return self.producer_call("reading unserved tasks", read)


__all__ = ["RedisTaskRegistry", "ServedTask", "TaskSet", "Unserved"]
