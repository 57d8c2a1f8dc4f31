"""Which Redis errors mean what: the one home of the error tuples callers catch."""

from __future__ import annotations

import redis
from redis.exceptions import RedisClusterException

from taskqueue.errors import BrokerError

#: Errors after which the same command may succeed: the connection, not the command, failed.
#: (The cluster client's "no node can be reached" arrives as a ConnectionError: see
#: ``connection``.)
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

#: Everything a background loop (worker, scheduler, autoscaler, health) treats as "Redis failed".
REDIS_ERRORS = (redis.exceptions.RedisError, RedisClusterException, BrokerError)

__all__ = ["REDIS_ERRORS", "TRANSIENT"]
