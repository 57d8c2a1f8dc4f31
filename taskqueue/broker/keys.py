"""The Redis key layout: the only place a key name is spelled.

Keys come in slot groups, each under one hash tag, because a Lua script may
only touch keys of one slot (Redis Cluster refuses the others) and what must
be atomic (a task's state with its queue entry and its lease) is done by one
script:

- on a single server (and Sentinel) there is one group, ``{namespace}``, so one
  script takes from the highest-priority non-empty queue of all a worker
  serves, leases the task and updates its state atomically;
- on a Redis Cluster every queue is its own group, ``{namespace/queue}``: its
  list, its tasks (hash, history, result signal, logs), its leases, scheduled
  tasks, dead letters, counters, metrics, periodic definitions and the task
  registry entries of that queue. So the queues of one namespace spread over
  the masters. A few keys are namespace-wide and stay in ``{namespace}``: the
  worker registry, control and wake-up lists of worker processes, the task
  names and definitions workers publish, and the autoscaler counters.

``Keys.for_queue(queue)`` gives a queue's group (on a single server: the same
``Keys``); callers make one script call per group (``groups``). Scripts that
act on tasks they only learn about while running (the fetch script pops ids,
then touches those tasks) receive key *prefixes* in KEYS (``task_prefix``
and friends below). Keys derived from them keep the hash tag, so they stay
in the declared slot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache, cached_property


@dataclass(frozen=True)
class Keys:
    """The names of one slot group's keys. Each name is computed once per ``Keys``
    (``cached_property``; equality and hashing use the three fields only)."""

    namespace: str = "taskqueue"
    #: True on a Redis Cluster: each queue gets a slot group of its own.
    cluster: bool = False
    #: The queue whose slot group these keys name ('' : the namespace-wide group).
    queue_group: str = ""

    @cached_property
    def base(self) -> str:
        tag = self.namespace + ("/" + self.queue_group if self.queue_group else "")
        return "{" + tag + "}:"

    def for_queue(self, queue: str) -> Keys:
        """The keys of ``queue``'s slot group (on a single server: these keys)."""
        return _queue_keys(self, queue) if self.cluster else self

    @cached_property
    def namespace_wide(self) -> Keys:
        """The keys of the namespace-wide group (workers, control lists, task names)."""
        return replace(self, queue_group="") if self.queue_group else self

    def groups(self, queues: Iterable[str]) -> list[tuple[Keys, list[str]]]:
        """``queues`` split by slot group, in their order: one script call per group.

        A single server has one group holding every queue; a cluster one group per queue.
        """
        out: dict[Keys, list[str]] = {}
        for queue in queues:
            out.setdefault(self.for_queue(queue), []).append(queue)
        return list(out.items())

    # Per task -------------------------------------------------------------
    @cached_property
    def task_prefix(self) -> str:
        """HASH per task: payload, status, attempts, token, result, error..."""
        return self.base + "task:"

    @cached_property
    def history_prefix(self) -> str:
        """LIST per task: one JSON document per failed attempt or recovery."""
        return self.base + "history:"

    @cached_property
    def done_prefix(self) -> str:
        """LIST per task: gets one element when the task reaches a final state,
        so ``result()`` can block on it (BRPOPLPUSH onto itself) instead of polling."""
        return self.base + "done:"

    @cached_property
    def logs_prefix(self) -> str:
        """LIST per task of what it printed or logged (``handle.logs``), one element per
        line, prefixed by a one-letter kind (see ``taskqueue.capture``). Written only when
        an attempt produced output, in the same round trip as its outcome; bounded by
        ``tasks.max_log_lines``."""
        return self.base + "logs:"

    def task(self, task_id: str) -> str:
        return self.task_prefix + task_id

    def history(self, task_id: str) -> str:
        return self.history_prefix + task_id

    def done(self, task_id: str) -> str:
        return self.done_prefix + task_id

    def logs(self, task_id: str) -> str:
        return self.logs_prefix + task_id

    # Per queue ------------------------------------------------------------
    @cached_property
    def queue_prefix(self) -> str:
        """LIST per queue of pending task ids; RPUSH at the tail, LPOP at the head."""
        return self.base + "queue:"

    @cached_property
    def wake_prefix(self) -> str:
        """LIST per queue of wake-up tokens that idle workers block on."""
        return self.base + "wake:"

    @cached_property
    def dead_prefix(self) -> str:
        """ZSET per queue of dead task ids, scored by the time they died."""
        return self.base + "dead:"

    @cached_property
    def stats_prefix(self) -> str:
        """HASH per queue of counters (processed, failed, retried, dead, ...)."""
        return self.base + "stats:"

    def queue(self, name: str) -> str:
        return self.queue_prefix + name

    def wake(self, name: str) -> str:
        return self.wake_prefix + name

    def dead(self, name: str) -> str:
        return self.dead_prefix + name

    def stats(self, name: str) -> str:
        return self.stats_prefix + name

    @cached_property
    def metrics_prefix(self) -> str:
        """HASH per queue, written by the ack/fail/fetch scripts in the same call as the
        state change, so metrics cost no extra round trip. Bounded: its size depends on
        the number of task names, never on the number of tasks. Fields:

        - ``<counter>|<task name>``: processed, failed, retried, dead;
        - ``exec.<bucket>|<task name>``, ``exec.sum|<task name>``: execution time of
          every attempt (ms), a fixed-bucket histogram (bounds in ``broker/scripts.py``);
        - ``wait.<bucket>|<task name>``, ``wait.sum|<task name>``: queue wait (ms),
          from enqueue (or the due time of a delay or retry) to the start of the attempt;
        - ``tp.<s>`` / ``tpt.<s>``: a ring of 60 one-second slots (count, epoch second)
          of tasks that finished (succeeded, or failed for good).
        """
        return self.base + "metrics:"

    def metrics(self, name: str) -> str:
        return self.metrics_prefix + name

    @cached_property
    def minutes_prefix(self) -> str:
        """HASH per queue and minute (``minutes:<queue>:<epoch minute>``): the history the
        dashboard charts, written by ack.lua and fail.lua in the call that stores the
        outcome, and expiring ``metrics.history_retention`` after its minute ends. Fields,
        per task name: ``ok|<name>`` (succeeded attempts), ``fail|<name>`` (failed attempts,
        retried or not; cancellations are not counted), ``ms|<name>`` (sum of their
        execution times, ms) and ``h<bucket>|<name>`` (their execution-time histogram, the
        buckets of ``HISTOGRAM_BOUNDS_MS``). Bounded by the retention and the number of
        task names, never by the number of tasks."""
        return self.base + "minutes:"

    def minutes(self, name: str) -> str:
        """The prefix of one queue's minute hashes; the scripts append the epoch minute."""
        return self.minutes_prefix + name + ":"

    def minute(self, name: str, minute: int) -> str:
        """One queue's hash for one epoch minute (``ms // 60000``)."""
        return self.minutes(name) + str(int(minute))

    # Flow control (DESIGN 11, ``_lib_limits.lua``) --------------------------
    @cached_property
    def limit_prefix(self) -> str:
        """Prefix of the flow-control keys of the queues of this group. The scripts append a
        kind and a suffix the producer wrote (``taskqueue.limits``): ``rate:<queue> <bucket>``
        (HASH r, s: the next free reservation and start, ms), ``conc:<queue> <bucket>`` (SET
        of the ids holding a concurrency slot), ``held:<queue> <bucket>`` (LIST of the ids
        waiting for one), ``unique:<queue> <key>`` and ``debounce:<queue> <key>`` (STRING:
        the id owning the key). Queue and task names hold no space, so a suffix is
        unambiguous; a bucket is the task name, or ``<name>:<argument>=<value>``."""
        return self.base + "limit:"

    def rate(self, queue: str, bucket: str) -> str:
        return self.limit_prefix + "rate:" + queue + " " + bucket

    def concurrency(self, queue: str, bucket: str) -> str:
        return self.limit_prefix + "conc:" + queue + " " + bucket

    def held(self, queue: str, bucket: str) -> str:
        return self.limit_prefix + "held:" + queue + " " + bucket

    def unique(self, queue: str, key: str) -> str:
        return self.limit_prefix + "unique:" + queue + " " + key

    def debounce(self, queue: str, key: str) -> str:
        return self.limit_prefix + "debounce:" + queue + " " + key

    @cached_property
    def limits_index(self) -> str:
        """HASH ``<queue> <bucket>`` -> ``<interval ms>|<concurrency>|<task name>`` of every limited bucket
        the group's queues have seen (written at enqueue), for the dashboard's limits page."""
        return self.base + "limits"

    # Shared ---------------------------------------------------------------
    @cached_property
    def leases(self) -> str:
        """ZSET task id -> lease deadline (ms, server clock)."""
        return self.base + "leases"

    @cached_property
    def scheduled(self) -> str:
        """ZSET task id -> due time (ms, server clock): delayed tasks and retries."""
        return self.base + "scheduled"

    @cached_property
    def wake_scheduler(self) -> str:
        """LIST that wakes one idle worker when a task is scheduled earlier than it planned."""
        return self.base + "wake-scheduled"

    @cached_property
    def paused(self) -> str:
        """SET of queue names that workers do not take from."""
        return self.base + "paused"

    @cached_property
    def workers(self) -> str:
        """ZSET worker id -> heartbeat deadline (ms); expired members are dead workers."""
        return self.base + "workers"

    @cached_property
    def worker_prefix(self) -> str:
        """HASH per worker process: host, pid, queues, threads, started-at."""
        return self.base + "worker:"

    def worker(self, worker_id: str) -> str:
        return self.worker_prefix + worker_id

    def wake_worker(self, worker_id: str) -> str:
        """LIST private to one worker process: pushed to stop its idle threads at once."""
        return self.base + "wake-worker:" + worker_id

    @cached_property
    def control_prefix(self) -> str:
        """LIST per worker process of control messages (ids of tasks asked to cancel),
        read by its heartbeat thread so a cancel reaches a running task at once."""
        return self.base + "control:"

    def control(self, worker_id: str) -> str:
        return self.control_prefix + worker_id

    @cached_property
    def autoscaler(self) -> str:
        """HASH of autoscaler decision counters (scale_up, scale_down) and the last
        decision (JSON), summed over every process that runs an autoscaler."""
        return self.base + "autoscaler"

    @cached_property
    def periodic(self) -> str:
        """HASH periodic name -> JSON document (task, queue, schedule, next and last run,
        run counters), written at registration and with every claimed slot."""
        return self.base + "periodic"

    @cached_property
    def periodic_due(self) -> str:
        """ZSET periodic name -> next run (ms, server clock). Schedulers claim a slot by
        compare-and-set on this score, which is what makes each slot run once."""
        return self.base + "periodic-due"

    @cached_property
    def periodic_paused(self) -> str:
        """SET of paused periodic names: their slots are claimed and skipped, not run
        (in the slot group of each periodic task's queue, beside its definition)."""
        return self.base + "periodic-paused"

    # The task registry ------------------------------------------------------
    @cached_property
    def taskset_prefix(self) -> str:
        """SET per task set (digest of a worker's task names and queues) of the task names
        it serves; the fetch script leases only tasks whose name is in the caller's set.
        Shared by every process with the same tasks; expires with its last heartbeat."""
        return self.base + "taskset:"

    def taskset(self, digest: str) -> str:
        return self.taskset_prefix + digest

    @cached_property
    def servers_prefix(self) -> str:
        """ZSET per queue and task name (``servers:<queue>:<name>``): task-set digest ->
        expiry (ms). Tells the fetch script whether a live worker serves a task it cannot."""
        return self.base + "servers:"

    @cached_property
    def wake_taskset_prefix(self) -> str:
        """LIST per task set of wake-up tokens: pushed when a worker leaves in its queue a
        task that this task set serves, so one of its idle threads takes it at once."""
        return self.base + "wake-set:"

    def wake_taskset(self, digest: str) -> str:
        return self.wake_taskset_prefix + digest

    @cached_property
    def task_names(self) -> str:
        """ZSET task name -> until when (ms) a live worker serves it (``taskqueue tasks``)."""
        return self.base + "task-names"

    @cached_property
    def task_definitions(self) -> str:
        """HASH task name -> JSON (default queue, parameter names) as its workers publish it."""
        return self.base + "task-definitions"

    @cached_property
    def parked_prefix(self) -> str:
        """LIST per task name of tasks taken out of their queue because no live worker
        served that name; a worker that serves it puts them back when it publishes."""
        return self.base + "parked:"

    @cached_property
    def unserved(self) -> str:
        """ZSET task id -> when (ms) a fetch first found no live worker serving it; the task
        is dead-lettered as unknown-task once ``workers.unknown_task_grace`` has passed."""
        return self.base + "unserved"

    # Workflows (DESIGN 10; taskqueue.broker.dependencies) ---------------------
    @cached_property
    def deps_prefix(self) -> str:
        """SET per WAITING task of the ids of the dependencies it still waits for (in the
        dependent's group). The script that removes the last one releases the task."""
        return self.base + "deps:"

    @cached_property
    def dependents_prefix(self) -> str:
        """LIST per task of its dependents (in the dependency's group), one entry each:
        the dependent's task prefix, queue, id, input index and whether it takes the
        result, NUL-separated. Read by the script that stores the task's final outcome."""
        return self.base + "dependents:"

    @cached_property
    def outbox(self) -> str:
        """ZSET of notices (cluster only): "task X ended S, tell dependent D", written by the
        outcome script when D is in another slot group, scored by when; a relay applies
        each to D's group (idempotently) and removes it."""
        return self.base + "outbox"

    @cached_property
    def waiting_prefix(self) -> str:
        """SET per queue of its WAITING task ids (readers count and list them)."""
        return self.base + "waiting:"

    def waiting(self, queue: str) -> str:
        return self.waiting_prefix + queue

    @cached_property
    def workflow_prefix(self) -> str:
        """HASH per workflow (chain, group, chord): kind, created_ms, total, members (JSON)."""
        return self.base + "workflow:"

    def workflow(self, workflow_id: str) -> str:
        return self.workflow_prefix + workflow_id

    @cached_property
    def workflows(self) -> str:
        """ZSET workflow id -> created ms, the dashboard's list (trimmed by age)."""
        return self.base + "workflows"

    @cached_property
    def workflow_keys(self) -> list[str]:
        """The keys every script that may settle a task passes LAST (``_lib_workflow.lua``
        reads them as ``wf_keys()``), so a dependency's outcome decides its dependents."""
        return [
            self.task_prefix,
            self.history_prefix,
            self.done_prefix,
            self.queue_prefix,
            self.wake_prefix,
            self.scheduled,
            self.wake_scheduler,
            self.stats_prefix,
            self.deps_prefix,
            self.dependents_prefix,
            self.outbox,
            self.waiting_prefix,
        ]


@cache
def _queue_keys(keys: Keys, queue: str) -> Keys:
    return replace(keys, queue_group=queue)
