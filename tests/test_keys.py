"""The key layout: a single server's keys are exactly those of the versions before slot
groups (so data they wrote keeps working), and a cluster's follow the rule of one slot
group per queue, with the namespace-wide keys in the namespace's own."""

from __future__ import annotations

from functools import cached_property

import pytest
from redis.crc import key_slot

from taskqueue.broker.keys import Keys

#: Every key (or prefix) of the namespace "taskqueue" as the layout before this one spelled it.
SINGLE_SERVER = {
    "autoscaler": "{taskqueue}:autoscaler",
    "control_prefix": "{taskqueue}:control:",
    "dead_prefix": "{taskqueue}:dead:",
    "done_prefix": "{taskqueue}:done:",
    "history_prefix": "{taskqueue}:history:",
    "leases": "{taskqueue}:leases",
    "logs_prefix": "{taskqueue}:logs:",
    "metrics_prefix": "{taskqueue}:metrics:",
    "parked_prefix": "{taskqueue}:parked:",
    "paused": "{taskqueue}:paused",
    "periodic": "{taskqueue}:periodic",
    "periodic_due": "{taskqueue}:periodic-due",
    "queue_prefix": "{taskqueue}:queue:",
    "scheduled": "{taskqueue}:scheduled",
    "servers_prefix": "{taskqueue}:servers:",
    "stats_prefix": "{taskqueue}:stats:",
    "task_definitions": "{taskqueue}:task-definitions",
    "task_names": "{taskqueue}:task-names",
    "task_prefix": "{taskqueue}:task:",
    "taskset_prefix": "{taskqueue}:taskset:",
    "unserved": "{taskqueue}:unserved",
    "wake_prefix": "{taskqueue}:wake:",
    "wake_scheduler": "{taskqueue}:wake-scheduled",
    "wake_taskset_prefix": "{taskqueue}:wake-set:",
    "worker_prefix": "{taskqueue}:worker:",
    "workers": "{taskqueue}:workers",
}

#: Keys every queue of a cluster has in its own slot group.
PER_QUEUE_GROUP = [
    "task_prefix", "history_prefix", "done_prefix", "logs_prefix", "queue_prefix", "wake_prefix",
    "dead_prefix", "stats_prefix", "metrics_prefix", "leases", "scheduled", "wake_scheduler", "paused",
    "periodic", "periodic_due", "taskset_prefix", "servers_prefix", "wake_taskset_prefix",
    "parked_prefix", "unserved", "minutes_prefix", "periodic_paused",
    "limit_prefix", "limits_index",  # flow control
    "deps_prefix", "dependents_prefix", "outbox", "waiting_prefix", "workflow_prefix", "workflows",  # workflows
]  # fmt: skip
NAMESPACE_WIDE = [
    "workers",
    "worker_prefix",
    "control_prefix",
    "autoscaler",
    "task_names",
    "task_definitions",
]


@pytest.mark.parametrize("name", sorted(SINGLE_SERVER))
def test_a_single_server_keeps_the_layout_it_had(name: str) -> None:
    keys = Keys("taskqueue")
    assert getattr(keys, name) == SINGLE_SERVER[name]
    assert getattr(keys.for_queue("low"), name) == SINGLE_SERVER[name]  # one group for every queue
    assert keys.groups(["high", "low"]) == [(keys, ["high", "low"])]


def test_on_a_cluster_each_queue_is_a_slot_group_of_its_own() -> None:
    keys = Keys("taskqueue", cluster=True)
    high, low = keys.for_queue("high"), keys.for_queue("low")
    assert high.task("t1") == "{taskqueue/high}:task:t1" and low.queue("low") == "{taskqueue/low}:queue:low"
    for k in (high, low):
        slots = {key_slot(getattr(k, name).encode()) for name in PER_QUEUE_GROUP}
        assert len(slots) == 1, "a queue's keys must share one slot"
    assert key_slot(high.leases.encode()) != key_slot(low.leases.encode())
    ns_slots = {key_slot(getattr(high.namespace_wide, name).encode()) for name in NAMESPACE_WIDE}
    assert ns_slots == {key_slot(b"{taskqueue}")}
    assert [q for _, q in keys.groups(["high", "low", "high"])] == [["high", "high"], ["low"]]


def test_every_key_is_classified() -> None:
    names = {n for n in dir(Keys) if isinstance(getattr(Keys, n), (property, cached_property))}
    names -= {"base", "namespace_wide", "workflow_keys"}  # workflow_keys: a list of the keys above
    assert names == set(PER_QUEUE_GROUP) | set(NAMESPACE_WIDE)
