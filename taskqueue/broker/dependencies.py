"""The workflows port over Redis: write a workflow, relay its notices, read its edges.

Writing (``enqueue_workflow``): one ``workflow.lua`` call per slot group holding
members, pipelined. On a single server (and whenever the whole workflow and the
tasks it depends on share one group) that is one call: written whole or not at
all, in one round trip. On a Redis Cluster a workflow whose members sit in
queues of different groups cannot be one atomic call, so it is written in two
round trips and a partial write is never runnable:

1. every group's members are written, its runnable members *held* (WAITING on
   a hold token of the workflow), and each dependency's list of dependents in
   the dependency's own group;
2. once every group answered, the edges from tasks outside the workflow are
   registered in their groups, and the holds are released (``wf_apply.lua``).

A failure in step 1 cancels what was written (best effort) and raises; the
held members never ran. A failure in step 2 is retried like every producer call;
when it still fails the caller gets ``BrokerError`` and the members stay held
(visible as WAITING, never run) until cancelled.

Relaying (``relay``, cluster only): an outcome script tells a dependent in
another group through a notice in its own group's outbox; the worker that
stored the outcome relays it at once, and every worker's heartbeat relays
notices older than a moment (a worker that died between the two steps). A
notice applied twice changes nothing (``_lib_workflow.lua``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import redis

from taskqueue.broker.core import RedisCore
from taskqueue.broker.keys import Keys
from taskqueue.broker.plans import Member, WorkflowPlan, WorkflowRecord
from taskqueue.broker.ports import Dependencies
from taskqueue.broker.producer import enqueue_args, enqueue_keys
from taskqueue.broker.records import text

SEP = "\0"
#: Notices one relay pass reads per group, and passes per call (a cascade over groups
#: moves one group further per pass; the heartbeat's next call carries on).
_RELAY_BATCH = 500
_RELAY_PASSES = 8


class _MissingDependency(Exception):
    """workflow.lua refused the write: a dependency from outside the plan is not stored."""


class _TakenId(Exception):
    """workflow.lua refused the write: a WAITING member's id is taken."""


def _entry(k: Keys, member: Member, edge_index: int, wants: bool) -> str:
    """A dependents-list entry for ``member`` (see ``_lib_workflow.lua``)."""
    r = member.request
    return SEP.join([k.task_prefix, r.queue, r.id, str(edge_index), "1" if wants else "0"])


def _notice(queue: str, task_id: str, source: str) -> str:
    """A notice that ``source`` succeeded, without a result: how a hold is released."""
    return SEP.join([queue, task_id, source, "", "SUCCEEDED", "0", "0", "", ""])


class _GroupCall:
    """What one ``workflow.lua`` call writes in one slot group."""

    def __init__(self) -> None:
        self.runnable: list[Member] = []
        self.waiting: list[tuple[Member, list[str]]] = []
        self.edges: list[tuple[str, str]] = []
        self.must_exist: list[str] = []
        self.record: list[Any] = ["", "", "", 0, ""]

    def args(self, ttl_ms: int) -> list[Any]:
        plain = enqueue_args([m.request for m in self.runnable])
        args: list[Any] = [len(enqueue_keys(Keys())), len(plain), *plain, ttl_ms, *self.record]
        args += [len(self.must_exist), *self.must_exist, len(self.waiting)]
        for member, awaited in self.waiting:
            r = member.request
            deps = json.dumps([e.task_id for e in member.after])
            args += [r.id, r.payload, r.queue, r.name, r.max_retries, r.signature, r.nonce, r.delay_ms]
            args += [member.policy, deps, SEP.join(awaited)]
        args.append(len(self.edges))
        for source, entry in self.edges:
            args += [source, entry]
        return args


class RedisDependencies(RedisCore, Dependencies):
    """``Dependencies`` on Redis (see the module docstring)."""

    @property
    def _ttl_ms(self) -> int:
        return int(self.settings.tasks.result_ttl * 1000)

    # -- writing ---------------------------------------------------------------------------
    def enqueue_workflow(self, plan: WorkflowPlan) -> None:
        members = plan.members
        ids = {m.request.id for m in members}
        for m in members:
            self.remember(m.request.id, m.request.queue)
        group_of = {m.request.id: self.keys.for_queue(m.request.queue) for m in members}
        external = list(dict.fromkeys(e.task_id for m in members for e in m.after if e.task_id not in ids))
        doing = f"enqueueing a {plan.kind} of {len(members)} task(s)"
        if external:
            found = self.producer_call(doing, lambda: self.groups_of(external))
            group_of.update(zip(external, found, strict=True))
            if self.keys.cluster:  # one script cannot check them all: check before writing
                statuses = self.producer_call(doing, lambda: self._statuses(external, found))
                gone = [t for t, s in zip(external, statuses, strict=True) if not s]
                if gone:
                    raise _missing(gone[0])
        member_groups = list(dict.fromkeys(group_of[m.request.id] for m in members))
        single = len(set(group_of.values())) == 1
        held = len(member_groups) > 1
        hold = "hold:" + plan.id
        calls: dict[Keys, _GroupCall] = {k: _GroupCall() for k in member_groups}
        later: dict[Keys, _GroupCall] = {}
        for m in members:
            k = group_of[m.request.id]
            if m.after or held:
                awaited = [e.task_id for e in m.after] or [hold]
                calls[k].waiting.append((m, awaited))
            else:
                calls[k].runnable.append(m)
            for edge in m.after:
                source = edge.task_id
                target = calls if source in ids or single else later
                call = target.setdefault(group_of[source], _GroupCall())
                call.edges.append((source, _entry(k, m, edge.index, edge.wants)))
                if single and source not in ids and source not in call.must_exist:
                    call.must_exist.append(source)
        if plan.record:
            first = members[0].request
            listing = json.dumps([[m.request.id, m.request.queue] for m in members])
            calls[member_groups[0]].record = [plan.id, plan.kind, listing, len(members), first.queue]
        try:
            self.producer_call(doing, lambda: self._write(calls))
        except _MissingDependency as exc:
            raise _missing(str(exc)) from None
        except _TakenId as exc:
            raise ValueError(f"a task with id {exc} exists already; ids must be unique") from None
        except Exception:
            if held:
                self._cancel_quietly([m.request.id for m in members])
            raise
        if held or later:
            releases = [(group_of[m.request.id], m) for m in members if held and not m.after]
            self.producer_call(
                f"releasing a {plan.kind} of {len(members)} task(s)",
                lambda: self._release(later, releases, hold),
            )

    def _write(self, calls: dict[Keys, _GroupCall]) -> list[Any]:
        def build(pipe: Any) -> None:
            for k, call in calls.items():
                keys = [*enqueue_keys(k), k.workflow_prefix, k.workflows, *k.workflow_keys]
                self.scripts.queue(pipe, "workflow", keys, call.args(self._ttl_ms))

        try:
            return self._pipeline(build, durable=[k.task_prefix for k in calls])
        except redis.exceptions.ResponseError as exc:
            if str(exc).startswith("NODEP "):
                raise _MissingDependency(str(exc).split()[1]) from None
            if str(exc).startswith("EXISTS "):
                raise _TakenId(str(exc).split()[1]) from None
            raise

    def _release(self, later: dict[Keys, _GroupCall], releases: list[tuple[Keys, Member]], hold: str) -> None:
        """Step 2 on a cluster: edges from outside the workflow, then the holds released."""
        by_group: dict[Keys, list[str]] = {}
        for k, m in releases:
            by_group.setdefault(k, []).append(_notice(m.request.queue, m.request.id, hold))

        def build(pipe: Any) -> None:
            for k, call in later.items():
                keys = [*enqueue_keys(k), k.workflow_prefix, k.workflows, *k.workflow_keys]
                self.scripts.queue(pipe, "workflow", keys, call.args(self._ttl_ms))
            for k, notices in by_group.items():
                self.scripts.queue(pipe, "wf_apply", k.workflow_keys, [self._ttl_ms, *notices])

        self._pipeline(build, durable=[k.task_prefix for k in [*later, *by_group]])
        self._relay_groups(list(later))  # dependencies that were final already told their dependents

    def _statuses(self, task_ids: list[str], groups: list[Keys]) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        for task_id, k in zip(task_ids, groups, strict=True):
            pipe.hget(k.task(task_id), "status")
        return [text(s) for s in pipe.execute()]

    def _cancel_quietly(self, task_ids: list[str]) -> None:
        cancel = getattr(self, "cancel_many", None)
        if cancel is None:
            return
        try:
            cancel(task_ids)
        except Exception:  # noqa: BLE001 - the write's own error is being raised
            pass

    # -- relaying (cluster) ------------------------------------------------------------------
    def relay(self, queues: Sequence[str], min_age_ms: int = 0) -> int:
        if not self.keys.cluster:
            return 0
        return self._relay_groups([k for k, _ in self.keys.groups(queues)], min_age_ms)

    def _relay_groups(self, groups: list[Keys], min_age_ms: int = 0) -> int:
        sources = list(dict.fromkeys(groups))
        applied = 0
        for _ in range(_RELAY_PASSES):
            if not sources:
                break
            cutoff: Any = "+inf" if min_age_ms <= 0 else int(time.time() * 1000) - min_age_ms
            pipe = self.client.pipeline(transaction=False)
            for k in sources:
                pipe.zrangebyscore(k.outbox, "-inf", cutoff, start=0, num=_RELAY_BATCH)
            found = [(k, n) for k, notices in zip(sources, pipe.execute(), strict=True) for n in notices]
            if not found:
                break
            by_dest: dict[Keys, list[bytes]] = {}
            for _, notice in found:
                queue = text(notice.split(b"\0", 1)[0])
                by_dest.setdefault(self.keys.for_queue(queue), []).append(notice)

            def build(pipe: Any, by_dest: dict[Keys, list[bytes]] = by_dest) -> None:
                for k, notices in by_dest.items():
                    self.scripts.queue(pipe, "wf_apply", k.workflow_keys, [self._ttl_ms, *notices])

            posted = self._pipeline(build, durable=[k.task_prefix for k in by_dest])
            done = self.client.pipeline(transaction=False)
            for k, notice in found:
                done.zrem(k.outbox, notice)
            done.execute()
            applied += len(found)
            sources = [k for k, n in zip(by_dest, posted, strict=True) if int(n) > 0]
        return applied

    # -- reading -----------------------------------------------------------------------------
    def inputs(self, task_id: str, queue: str, count: int) -> list[bytes | None]:
        if count <= 0:
            return []
        key = self.keys.for_queue(queue).task(task_id)
        values: list[Any] = self.client.hmget(key, [f"in.{i}" for i in range(count)])
        return [v if isinstance(v, bytes) or v is None else str(v).encode() for v in values]

    def dependents(self, task_id: str) -> list[str]:
        (k,) = self.producer_call(f"finding task {task_id}", lambda: self.groups_of([task_id]))
        entries = self.producer_call(
            f"reading the dependents of task {task_id}",
            lambda: self.client.lrange(k.dependents_prefix + task_id, 0, -1),
        )
        out = []
        for entry in entries:
            parts = (entry if isinstance(entry, bytes) else str(entry).encode()).split(b"\0")
            if len(parts) >= 3:
                out.append(text(parts[2]))
        return list(dict.fromkeys(out))

    def waiting_counts(self, queues: Sequence[str]) -> dict[str, int]:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                pipe.scard(self.keys.for_queue(queue).waiting(queue))
            return pipe.execute()

        return dict(
            zip(queues, (int(n) for n in self.producer_call("counting waiting tasks", read)), strict=True)
        )

    def waiting_ids(self, queue: str, limit: int = 100) -> list[str]:
        key = self.keys.for_queue(queue).waiting(queue)
        ids = self.producer_call(
            f"listing waiting tasks of {queue}", lambda: self.client.srandmember(key, limit)
        )
        return sorted(text(i) for i in ids or [])

    def waiting_for(self, task_ids: Sequence[str]) -> list[list[str]]:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for task_id, k in zip(task_ids, self.groups_of(task_ids), strict=True):
                pipe.smembers(k.deps_prefix + task_id)
            return pipe.execute()

        replies = self.producer_call(f"reading what {len(task_ids)} task(s) wait for", read)
        return [sorted(text(d) for d in r if not d.startswith(b"hold:")) for r in replies]

    def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for k, _ in self.keys.groups(self.settings.queues_by_priority()):
                pipe.hgetall(k.workflow(workflow_id))
            return pipe.execute()

        for h in self.producer_call(f"reading workflow {workflow_id}", read):
            record = WorkflowRecord.from_hash(workflow_id, h)
            if record is not None:
                return record
        return None

    def workflows(self, queues: Sequence[str], limit: int = 50) -> list[WorkflowRecord]:
        groups = [k for k, _ in self.keys.groups(queues)]

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for k in groups:
                pipe.zrevrange(k.workflows, 0, limit - 1)
            listed = pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            wanted = [(k, text(i)) for k, ids in zip(groups, listed, strict=True) for i in ids]
            for k, wf_id in wanted:
                pipe.hgetall(k.workflow(wf_id))
            return [(wf_id, h) for (_, wf_id), h in zip(wanted, pipe.execute(), strict=True)]

        records = [WorkflowRecord.from_hash(i, h) for i, h in self.producer_call("listing workflows", read)]
        found = [r for r in records if r is not None]
        found.sort(key=lambda r: r.created_ms or 0, reverse=True)
        return found[:limit]


def _missing(task_id: str) -> ValueError:
    return ValueError(
        f"depends_on: task {task_id} is not in Redis (it never existed, was purged, or its result "
        "expired after tasks.result_ttl); nothing was enqueued. Depend on a task that is still stored"
    )


__all__ = ["RedisDependencies"]
