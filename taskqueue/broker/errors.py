"""Which Redis errors mean what: the one home of the error tuples callers catch."""

from __future__ import annotations

import redis
from redis.exceptions import RedisClusterException

from taskqueue.errors import BrokerError

#: Errors after which the same command may succeed: the connection, not the command, failed.
#: redis-py's cluster client raises ``RedisClusterException`` (not a RedisError) when no
#: node of the cluster answers: as transient as a refused connection.
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, RedisClusterException)

#: Everything a background loop (worker, scheduler, autoscaler, health) treats as "Redis failed".
REDIS_ERRORS = (redis.exceptions.RedisError, RedisClusterException, BrokerError)

__all__ = ["REDIS_ERRORS", "TRANSIENT"]
