"""Loads the Lua scripts of this folder and runs them by SHA.

redis-py's ``Script`` objects re-check every script with SCRIPT EXISTS each
time a pipeline runs, an extra round trip on the hot path. Here the SHAs are
computed once, scripts run with EVALSHA, and after a NOSCRIPT answer (server
restart, SCRIPT FLUSH, failover) they are loaded again and the call repeated.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import redis


def _histogram_bounds() -> tuple[int, ...]:
    # 1..8 ms, then the Renard R10 series (ten steps a decade, each 25% above the
    # last) up to one hour. It contains every 1-2-5 value, so coarser histograms
    # (Prometheus) can be cut from it exactly.
    r10 = (100, 125, 160, 200, 250, 315, 400, 500, 630, 800)
    bounds = [1, 2, 3, 4, 5, 6, 8]
    for decade in (10, 100, 1_000, 10_000, 100_000, 1_000_000):
        bounds += [decade * r // 100 for r in r10 if decade * r // 100 < 3_600_000]
    return (*bounds, 3_600_000)


#: Upper bounds (ms, inclusive) of the latency histogram buckets the scripts fill; one
#: more bucket above the last bound catches the rest. Fixed, so a histogram's memory is
#: bounded (and sparse: only buckets that were hit exist); each bucket is 25% wide, so
#: a percentile read from them is within 25%.
HISTOGRAM_BOUNDS_MS: tuple[int, ...] = _histogram_bounds()

NAMES = (
    "enqueue",
    "fetch",
    "ack",
    "fail",
    "release",
    "cancel",
    "heartbeat",
    "renew",
    "requeue_dead",
    "purge",
    "snapshot",
    "promote",
    "claim_periodic",
    "watch",
    "start",
    "browse",
    "retry_now",
    "delete_dead",
    "history",
    "progress",
    "workflow",
    "wf_apply",
)


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is redis-py's cluster client (or one of its pipelines)."""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _read(name: str) -> str:
    return resources.files("taskqueue.broker").joinpath("scripts", f"{name}.lua").read_text()


class Scripts:
    def __init__(self) -> None:
        bounds = ", ".join(str(b) for b in HISTOGRAM_BOUNDS_MS)
        # _lib.lua, then every _lib_<topic>.lua (workflows, limits...), in name order.
        extra = sorted(
            p.name[: -len(".lua")]
            for p in resources.files("taskqueue.broker").joinpath("scripts").iterdir()
            if p.name.startswith("_lib_") and p.name.endswith(".lua")
        )
        lib = f"local HIST_BOUNDS_MS = {{{bounds}}}\n" + "\n".join(_read(name) for name in ["_lib", *extra])
        #: The shared helpers as prepended to every script (tests run them on their own).
        self.lib = lib
        self.source: dict[str, str] = {name: lib + "\n" + _read(name) for name in NAMES}
        # workflow.lua writes a workflow's runnable members with enqueue.lua's own body,
        # wrapped as a function, so they are written exactly as enqueue() writes a task.
        self.source["workflow"] = (
            f"{lib}\nlocal function plain_enqueue(KEYS, ARGV)\n{_read('enqueue')}\nend\n{_read('workflow')}"
        )
        self.sha: dict[str, str] = {
            name: hashlib.sha1(src.encode()).hexdigest() for name, src in self.source.items()
        }

    def load_all(self, client: redis.Redis) -> None:
        """Load every script: in one pipeline, or on a cluster on every primary
        (redis-py sends SCRIPT LOAD to all of them; a cluster pipeline refuses it)."""
        if is_cluster(client):
            for src in self.source.values():
                client.script_load(src)
            return
        pipe = client.pipeline(transaction=False)
        for src in self.source.values():
            pipe.script_load(src)
        pipe.execute()

    def queue(self, pipe: Any, name: str, keys: list[str], args: list[Any]) -> None:
        """Add one script call to a pipeline (spelled as a raw command: redis-py's cluster
        pipeline blocks its ``evalsha`` method but routes the command by its keys)."""
        pipe.execute_command("EVALSHA", self.sha[name], len(keys), *keys, *args)

    def run(self, client: redis.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return client.evalsha(self.sha[name], len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self.load_all(client)
            return client.evalsha(self.sha[name], len(keys), *keys, *args)
