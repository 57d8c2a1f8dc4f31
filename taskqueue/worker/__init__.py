"""The worker pool: threads that lease tasks from Redis and run them.

Each thread loops on its own: lease a task (one Lua call that also takes the
highest-priority queue first), run it, then store the result *and* lease the
next task in the same round trip. Two helper threads per pool: the heartbeat
renews the leases of running tasks (so a long task is never handed to another
worker) and registers the process; the watchdog enforces timeouts.

One module per part:

- ``pool``: ``WorkerPool``, the slots and their lifecycle (start, resize, stop);
- ``slot``: one thread's loop (lease, run, store, prefetch);
- ``execute``: one delivery (checks, the call, its result);
- ``failure``: a failed attempt (retry, dead, failed, cancelled) and storing it;
- ``heartbeat``: registration, lease renewal, cancellations;
- ``watchdog``: timeouts, lost leases, abandoned threads, slow buffers;
- ``interrupt``: raising an exception inside another thread;
- ``events`` and ``tasklog``: the hooks of an attempt, and the worker's log line per attempt;
- ``state``: what the threads share.

The pool takes the broker's ``WorkerLink`` port, not the queue: it needs
leases, outcomes and heartbeats, nothing else.
"""

from taskqueue.worker.pool import WorkerPool

__all__ = ["WorkerPool"]
