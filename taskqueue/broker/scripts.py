"""Loads the Lua scripts of this folder and runs them by SHA.

redis-py's ``Script`` objects re-check every script with SCRIPT EXISTS each
time a pipeline runs, an extra round trip on the hot path. Here the SHAs are
computed once, scripts run with EVALSHA, and after a NOSCRIPT answer (server
restart, SCRIPT FLUSH, failover) they are loaded again and the call repeated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
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


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEFINED = re.compile(r"local (?:function )?([A-Za-z_][A-Za-z0-9_]*)")


def _definitions(lib: str) -> dict[str, str]:
    """The helpers' top-level definitions (``local function f`` or ``local X =``, each
    with the comment above it), by name, in the order they are written."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    pending: list[str] = []
    for line in lib.splitlines():
        defined = _DEFINED.match(line)
        if defined:
            current = found[defined.group(1)] = [*pending, line]
            pending = []
        elif line.startswith("--") or not line.strip():
            pending.append(line)
        elif current is not None:
            current += [*pending, line]
            pending = []
    return {name: "\n".join(lines) for name, lines in found.items()}


def _with_helpers(helpers: dict[str, str], body: str) -> str:
    """``body`` after only the helpers it uses, directly or through other helpers.

    Every call of a script runs its whole text, so each helper defined costs the
    server a closure per call whether it is used or not: prepending all of them
    cost enqueue.lua about a third of its time on the server.
    """
    needed: set[str] = set()
    todo = [body]
    while todo:
        for name in set(_NAME.findall(todo.pop())) & helpers.keys() - needed:
            needed.add(name)
            todo.append(helpers[name])
    return "\n".join([*(text for name, text in helpers.items() if name in needed), body])


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
        #: The shared helpers, all of them (tests run them on their own).
        self.lib = lib
        helpers = _definitions(lib)
        self.source: dict[str, str] = {name: _with_helpers(helpers, _read(name)) for name in NAMES}
        # workflow.lua writes a workflow's runnable members with enqueue.lua's own body,
        # wrapped as a function, so they are written exactly as enqueue() writes a task.
        self.source["workflow"] = _with_helpers(
            helpers, f"local function plain_enqueue(KEYS, ARGV)\n{_read('enqueue')}\nend\n{_read('workflow')}"
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

    def run(
        self,
        client: redis.Redis,
        name: str,
        keys: list[str],
        args: list[Any],
        send: Callable[..., Any] | None = None,
    ) -> Any:
        """One EVALSHA through ``send`` (default: the client; the producer passes its lane)."""
        send = send or client.execute_command
        try:
            return send("EVALSHA", self.sha[name], len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self.load_all(client)
            return send("EVALSHA", self.sha[name], len(keys), *keys, *args)
