"""What every part of the Redis broker shares: the client, the keys, the scripts,
and the two ways a call can fail.

On a Redis Cluster each queue is a slot group of its own (see ``keys``): the
parts make one script call per group, pipelined, which redis-py's cluster
client sends to every master at once.

Producer calls go through ``producer_call``: transient connection errors are
retried with tenacity (bounded by ``redis.retry_attempts`` and
``redis.retry_max_seconds``), then raised as ``BrokerError``. Worker-side and
scheduler-side calls raise at once and their loop decides how to back off, so a
worker never blocks inside a retry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
import tenacity

from taskqueue.broker.connection import mask_url
from taskqueue.broker.errors import TRANSIENT, unfixable
from taskqueue.broker.keys import Keys
from taskqueue.broker.scripts import Scripts, is_cluster
from taskqueue.config import Settings
from taskqueue.errors import BrokerError

T = TypeVar("T")

#: Task ids whose queue a process remembers on a cluster (see ``RedisCore.groups_of``).
_WHERE_CACHE = 50_000


class ReplicaAckError(redis.exceptions.RedisError):
    """Fewer replicas than ``redis.min_replicas_ack`` confirmed a write in time.

    A RedisError but not a connection error: the producer retry does not repeat
    it (the write is on the primary), the caller gets a ``BrokerError`` saying so.
    """


class RedisCore:
    """Knows the key layout and the scripts; holds no task state of its own."""

    def __init__(self, client: redis.Redis, settings: Settings, url: str = "") -> None:
        self.client = client
        self.settings = settings
        #: Masked: safe for logs, errors and reprs.
        self.url = mask_url(url)
        #: The namespace-wide keys; ``keys.for_queue(q)`` gives a queue's slot group.
        self.keys = Keys(settings.redis.namespace, cluster=is_cluster(client))
        self.scripts = Scripts()
        #: (most dead letters per queue, their ttl in ms), as the scripts take them.
        self._dead = (
            int(settings.dead_letter.max_size),
            int(settings.dead_letter.ttl * 1000),
        )
        self._retried = (*TRANSIENT, ReplicaAckError)
        self._retrying = tenacity.Retrying(
            # A write the replicas did not confirm is repeated as it is: the scripts know
            # their own earlier write (a request's nonce), so only the WAIT is really redone.
            retry=tenacity.retry_if_exception_type(self._retried),
            stop=(
                tenacity.stop_after_attempt(max(1, settings.redis.retry_attempts - 1))  # after the first
                | tenacity.stop_after_delay(settings.redis.retry_max_seconds)
            ),
            wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0),
            reraise=True,
        )

        #: On a cluster: task id -> queue, for the tasks this process enqueued or read
        #: (a task's keys are in its queue's slot group, and a caller may know only its id).
        self._where: OrderedDict[str, str] = OrderedDict()
        self._where_lock = threading.Lock()
        #: Wake-up relays of the worker processes using this broker (cluster only).
        self._relays: dict[tuple[str, tuple[str, ...], str], Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, namespace={self.keys.namespace!r})"

    def group(self, queue: str) -> Keys:
        """The keys of ``queue``'s slot group."""
        return self.keys.for_queue(queue)

    # -- where a task lives ---------------------------------------------------------------
    def remember(self, task_id: str, queue: str) -> None:
        """Note a task's queue (cluster only), so reading it by id needs no search."""
        if self.keys.cluster:
            with self._where_lock:
                self._where[task_id] = queue
                self._where.move_to_end(task_id)
                while len(self._where) > _WHERE_CACHE:
                    self._where.popitem(last=False)

    def groups_of(self, task_ids: Sequence[str]) -> list[Keys]:
        """The slot-group keys of each task (on a single server: the namespace keys).

        On a cluster a task not seen by this process is looked for in every
        configured queue, one EXISTS per queue pipelined (one round trip per master);
        one found nowhere gets the group of the highest-priority queue, where
        reads find nothing, as they would for an unknown id on a single server.
        """
        if not self.keys.cluster:
            return [self.keys] * len(task_ids)
        with self._where_lock:
            known = {t: self._where[t] for t in task_ids if t in self._where}
        missing = [t for t in dict.fromkeys(task_ids) if t not in known]
        queues = self.settings.queues_by_priority()
        if missing:
            pipe = self.client.pipeline(transaction=False)
            for task_id in missing:
                for queue in queues:
                    pipe.exists(self.keys.for_queue(queue).task(task_id))
            found = pipe.execute()
            for i, task_id in enumerate(missing):
                hits = found[i * len(queues) : (i + 1) * len(queues)]
                where = next((q for q, hit in zip(queues, hits, strict=True) if hit), None)
                if where is not None:
                    self.remember(task_id, where)
                    known[task_id] = where
        return [self.keys.for_queue(known.get(t, queues[0])) for t in task_ids]

    def _relay_groups(self, groups: list[Keys], min_age_ms: int = 0) -> int:
        """Cluster: carry workflow notices from these groups' outboxes to their dependents
        (``RedisDependencies`` does; a part without it has nothing to relay)."""
        return 0

    # -- errors -----------------------------------------------------------------------
    def wrap_error(self, exc: redis.exceptions.RedisError, doing: str) -> BrokerError:
        """The ``BrokerError`` for ``exc``: what failed, while doing what, and what to do about it."""
        text = str(exc)
        advice = unfixable(exc)
        if advice is not None:  # no retry changes this answer: say what to do instead
            message = f"Redis refused a command while {doing}: {advice}"
        elif isinstance(exc, redis.exceptions.ClusterDownError):
            message = (
                f"the Redis Cluster is down while {doing} ({exc}): a slot has no serving master "
                "(a failover under way, or nodes lost); it may come back"
            )
        elif isinstance(exc, redis.exceptions.ReadOnlyError) or "read only replica" in text:
            # redis-py files this under ConnectionError; it is retried (a failover
            # may be under way) but reported for what it is.
            message = f"Redis is a read-only replica while {doing}: {exc}. Point redis.url at the primary"
        elif isinstance(exc, TRANSIENT):
            message = f"cannot reach Redis while {doing}: {exc}"
        elif "OOM" in text or "maxmemory" in text:
            message = (
                f"Redis is out of memory while {doing}: {exc}. Free memory or raise maxmemory; "
                "taskqueue needs maxmemory-policy noeviction so that queued tasks are never evicted"
            )
        else:
            message = f"Redis failed while {doing}: {exc}"
        error = BrokerError(message, url=self.url)
        error.__cause__ = exc
        return error

    def producer_call(self, doing: str, fn: Callable[[], T]) -> T:
        """Run fn, retrying transient connection errors, then raise BrokerError.

        The first try is a plain call: tenacity's retry object is built and entered only
        after a failure, so the success path (nearly every call) pays nothing for it.
        """
        try:
            return fn()
        except self._retried as exc:
            if self.settings.redis.retry_attempts <= 1 or self.settings.redis.retry_max_seconds <= 0:
                raise self.wrap_error(exc, doing) from exc
        except redis.exceptions.RedisError as exc:
            raise self.wrap_error(exc, doing) from exc
        try:
            return self._retrying(fn)
        except redis.exceptions.RedisError as exc:
            raise self.wrap_error(exc, doing) from exc

    # -- running scripts ------------------------------------------------------------------
    def _run(
        self, name: str, keys: list[str], args: list[Any], send: Callable[..., Any] | None = None
    ) -> Any:
        """One script call, one round trip (loading the scripts first after NOSCRIPT)."""
        return self.scripts.run(self.client, name, keys, args, send)

    def _pipeline(self, build: Callable[[Any], None], durable: Sequence[str] = ()) -> list[Any]:
        """Run a pipeline of commands and script calls, one reply per command.

        After NOSCRIPT (a restarted server, a promoted replica: scripts are not
        persisted) the scripts are loaded and only the calls that were refused
        run again: on a cluster the other masters ran theirs, and a plain
        command never needs repeating. ``durable``: keys written whose writes
        must reach ``redis.min_replicas_ack`` replicas before this returns.
        """
        pipe = self.client.pipeline(transaction=False)
        sent = _recording(pipe)
        build(pipe)
        commands = len(sent)
        waits = self._wait_replicas(pipe, durable)
        replies = pipe.execute(raise_on_error=False)
        replies, acked = replies[:commands], replies[commands:]
        refused = [i for i, r in enumerate(replies) if _noscript(r)]
        if refused:
            self.scripts.load_all(self.client)
            again = self.client.pipeline(transaction=False)
            for i in refused:
                args, options = sent[i]
                again.execute_command(*args, **options)
            self._wait_replicas(again, durable)
            repeated = again.execute(raise_on_error=False)
            for i, reply in zip(refused, repeated, strict=False):
                replies[i] = reply
            acked = repeated[len(refused) :]
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        if waits:
            self._check_replicas(acked)
        return replies

    # -- durability ---------------------------------------------------------------------
    def _wait_replicas(self, pipe: Any, durable: Sequence[str]) -> int:
        """Queue WAIT after the writes to ``durable`` keys, on each master that holds one
        and on the connection that wrote them (a cluster pipeline uses one per master);
        the number of WAITs queued."""
        wanted = self.settings.redis.min_replicas_ack
        if wanted <= 0 or not durable:
            return 0
        timeout_ms = max(1, int(self.settings.redis.replica_ack_timeout * 1000))
        if not self.keys.cluster:
            pipe.execute_command("WAIT", wanted, timeout_ms)
            return 1
        nodes = {}
        for key in durable:
            node = self.client.get_node_from_key(key)  # type: ignore[attr-defined]
            nodes[node.name] = node
        for node in nodes.values():
            pipe.execute_command("WAIT", wanted, timeout_ms, target_nodes=node)
        return len(nodes)

    def _check_replicas(self, acked: list[Any]) -> None:
        """Raise ``ReplicaAckError`` when a WAIT saw fewer replicas than asked for."""
        wanted = self.settings.redis.min_replicas_ack
        for reply in acked:
            if isinstance(reply, Exception):
                raise reply
            if int(reply) < wanted:
                raise ReplicaAckError(
                    f"only {int(reply)} of the {wanted} replicas (redis.min_replicas_ack) confirmed the "
                    f"write within {self.settings.redis.replica_ack_timeout} s (redis.replica_ack_timeout); "
                    "it is stored on the primary but a failover now could lose it"
                )

    def run_durable(
        self, name: str, keys: list[str], args: list[Any], send: Callable[..., Any] | None = None
    ) -> Any:
        """``_run`` for a write that must reach the replicas (``redis.min_replicas_ack``)."""
        if self.settings.redis.min_replicas_ack <= 0:
            return self._run(name, keys, args, send)
        return self._pipeline(lambda pipe: self.scripts.queue(pipe, name, keys, args), durable=keys[:1])[0]


def _recording(pipe: Any) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Make ``pipe`` note the (args, options) of every command queued on it (redis-py's
    command methods all go through ``execute_command``), so refused ones can be sent again."""
    sent: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    queue = pipe.execute_command

    def record(*args: Any, **options: Any) -> Any:
        sent.append((args, dict(options)))
        return queue(*args, **options)

    pipe.execute_command = record
    return sent


def _noscript(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.NoScriptError) or (
        isinstance(reply, redis.exceptions.ResponseError) and "NOSCRIPT" in str(reply)
    )


__all__ = ["RedisCore", "ReplicaAckError"]
