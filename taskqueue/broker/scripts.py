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

NAMES = (
    "enqueue",
    "fetch",
    "ack",
    "fail",
    "release",
    "cancel",
    "heartbeat",
    "requeue_dead",
    "purge",
    "snapshot",
    "promote",
    "claim_periodic",
)


def _read(name: str) -> str:
    return resources.files("taskqueue.broker").joinpath("scripts", f"{name}.lua").read_text()


class Scripts:
    def __init__(self) -> None:
        lib = _read("_lib")
        self.source: dict[str, str] = {name: lib + "\n" + _read(name) for name in NAMES}
        self.sha: dict[str, str] = {
            name: hashlib.sha1(src.encode()).hexdigest() for name, src in self.source.items()
        }

    def load_all(self, client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=False)
        for src in self.source.values():
            pipe.script_load(src)
        pipe.execute()

    def queue(self, pipe: Any, name: str, keys: list[str], args: list[Any]) -> None:
        """Add one script call to a pipeline."""
        pipe.evalsha(self.sha[name], len(keys), *keys, *args)

    def run(self, client: redis.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return client.evalsha(self.sha[name], len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self.load_all(client)
            return client.evalsha(self.sha[name], len(keys), *keys, *args)
