"""A lane: one connection of the client's pool, for the producer's hot path.

redis-py's command path (``Redis.execute_command``) takes a connection from
the pool, wraps the call in its own retry object, records observability
attributes and gives the connection back, for every command. For one
``delay()`` that bookkeeping cost more client time than the round trip
itself (a bare LPUSH loop ran 1.4-2.3x faster through a held connection than
through ``client.lpush``). A lane holds one connection and sends the command,
packed by hiredis when it is installed (redis-py's own packing walks every
argument in Python first: 12.6 against 4.5 µs for an enqueue), then reads the one reply: the same bytes on the
wire, the same reply parser, the same error classes (NOSCRIPT is
``NoScriptError``, a refused command ``ResponseError``).

Producers retry through ``producer_call`` as before: a connection whose call
failed mid-way is dropped (redis-py's connection does it), so the next call
starts on a fresh one and never reads a reply meant for another. The lock makes a lane safe to
share; group commit already has one writer at a time, so it is never waited on.
A forked child takes a connection of its own from the pool (redis-py resets a
pool after fork) instead of writing to the parent's socket.

Only for a plain ``redis.Redis`` client: the cluster client routes each
command to its slot's master and is used as it is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import redis

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # redis-py packs through hiredis too, after a Python pass over every argument
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - hiredis is optional
    _pack = None


class Lane:
    """``call(*args)``: send one command on the held connection and return its reply."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0

    def call(self, *args: Any) -> Any:
        with self._lock:
            conn = self._conn
            if conn is None or self._pid != os.getpid():
                conn = self._conn = self._pool.get_connection()
                self._pid = os.getpid()
            # On any failure mid-call (timeout, reset, interrupt) redis-py's connection
            # disconnects itself, so a late reply is never read as the next call's.
            packed = [_pack(args)] if _pack is not None else conn.pack_command(*args)
            conn.send_packed_command(packed, check_health=False)
            return conn.read_response()


#: The smallest pool a lane may take a connection of for good (``redis.pool_size``): in a
#: smaller one the other callers (``result()``, a worker thread) would wait for it.
MIN_POOL = 4


def lane_for(client: Any) -> Lane | None:
    """A lane for a plain ``redis.Redis`` (and fakeredis, which is one); None for a cluster
    or a pool of fewer than ``MIN_POOL`` connections (commands then go through redis-py)."""
    from taskqueue.broker.scripts import is_cluster

    if is_cluster(client) or getattr(client.connection_pool, "max_connections", MIN_POOL) < MIN_POOL:
        return None
    return Lane(client)


__all__ = ["Lane", "lane_for"]
