"""Turns a URL into a redis-py client: redis, rediss, unix, redis+sentinel, redis+cluster, memory.

What a valid URL is lives in ``taskqueue.urls`` (also used by the settings and
the CLI); this module only connects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import RedisClusterException

from taskqueue.urls import CLUSTER_SCHEMES, SCHEMES, check_url, mask_url, parse_cluster, parse_sentinel

if TYPE_CHECKING:
    from taskqueue.config import RedisSettings


def create_client(url: str, settings: RedisSettings) -> redis.Redis:
    """A client whose pool blocks (rather than fails) when all connections are busy.

    A malformed URL raises a one-line ConfigurationError before anything connects.
    """
    scheme = check_url(url)
    common: dict[str, Any] = {
        "socket_timeout": settings.command_timeout,
        "socket_connect_timeout": settings.connection_timeout,
        "health_check_interval": 30,
    }
    if scheme == "memory":
        import fakeredis

        # One in-process server per URL, so two queues on "memory://x" share data.
        server = fakeredis.FakeServer.get_server(f"taskqueue-{url}", version=(7,), server_type="redis")
        return fakeredis.FakeRedis(server=server)
    if scheme == "redis+sentinel":
        return _sentinel_client(url, settings, common)
    if scheme in CLUSTER_SCHEMES:
        return _cluster_client(url, settings, common)
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=settings.pool_size, timeout=settings.connection_timeout, **common
    )
    return redis.Redis(connection_pool=pool)


def _as_connection_error(call: Any) -> Any:
    """While a failover changes the cluster's shape, redis-py's cluster client can trip
    over a node it has just forgotten (AttributeError on None deep inside it). The
    command did not reach a server: say so as a ConnectionError, which every caller
    already retries or backs off from, so the next call sees the new topology."""

    def call_through(*args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except AttributeError as exc:
            raise redis.exceptions.ConnectionError(f"the cluster's layout is changing ({exc})") from exc
        except RedisClusterException as exc:
            if "cannot be connected" not in str(exc):
                raise
            raise redis.exceptions.ConnectionError(str(exc)) from exc

    return call_through


def _when_connected(record: Any) -> Any:
    """redis-py's cluster client records an error metric from the failed connection, and
    raises AttributeError (hiding the ConnectionError) when a node was down and there was
    none: record only when there is one."""

    def record_if_connected(error: Exception, connection: Any, *args: Any, **kwargs: Any) -> None:
        if connection is not None:
            record(error, connection, *args, **kwargs)

    return record_if_connected


def _scripts_by_keys() -> Any:
    """A command-policy resolver that routes EVAL/EVALSHA by their keys.

    Without it redis-py's cluster client asks the server (COMMAND GETKEYS) where each
    script call goes, since scripts have "movable" keys: one more round trip per call.
    Their keys are known (the number of keys is the third argument), and redis-py
    routes a keyed command by them itself.
    """
    from redis.commands.policies import (
        BasePolicyResolver,
        CommandPolicies,
        PolicyResolver,
        RequestPolicy,
        ResponsePolicy,
        StaticPolicyResolver,
    )

    keyed = CommandPolicies(
        request_policy=RequestPolicy.DEFAULT_KEYED, response_policy=ResponsePolicy.DEFAULT_KEYED
    )

    class ScriptsByKeys(BasePolicyResolver):
        def __init__(self, fallback: PolicyResolver | None = None) -> None:
            super().__init__({"core": {"eval": keyed, "evalsha": keyed}}, fallback or StaticPolicyResolver())

        def with_fallback(self, fallback: PolicyResolver) -> PolicyResolver:
            return ScriptsByKeys(fallback)

    return ScriptsByKeys()


def _cluster_client(url: str, settings: RedisSettings, common: dict[str, Any]) -> redis.Redis:
    """``redis+cluster://[user:pass@]host:port[,host:port]/``: redis-py's ``RedisCluster``,
    which learns the slot map from any startup node and follows MOVED and ASK itself.

    Typed as ``redis.Redis`` because the broker uses only the commands both share.
    """
    from redis.cluster import ClusterNode, RedisCluster

    address = parse_cluster(url)

    class Cluster(RedisCluster):
        """redis-py's cluster client with its slips worked around (8.1)."""

        def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
            pipe = super().pipeline(transaction, shard_hint)
            pipe._policy_resolver = self._policy_resolver  # redis-py does not hand it on
            pipe._record_error_metric = _when_connected(pipe._record_error_metric)
            pipe.execute = _as_connection_error(pipe.execute)
            return pipe

        def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            return _as_connection_error(super().execute_command)(*args, **kwargs)

        def _record_error_metric(self, error: Exception, connection: Any, *args: Any, **kwargs: Any) -> None:
            _when_connected(super()._record_error_metric)(error, connection, *args, **kwargs)

    from redis.maint_notifications import MaintNotificationsConfig

    client = Cluster(
        policy_resolver=_scripts_by_keys(),
        # Off: on every new connection the cluster client would send CLIENT
        # MAINT_NOTIFICATIONS, which servers before Redis 8 refuse (Redis 6.2 logs it as an
        # ACL denial of the user the ACL line makes). The workers reconnect by themselves.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
        username=address.username,
        password=address.password,
        ssl=address.tls,
        max_connections=settings.pool_size,
        **common,
    )
    return client  # type: ignore[return-value]


def _sentinel_client(url: str, settings: RedisSettings, common: dict[str, Any]) -> redis.Redis:
    """``redis+sentinel://[user:pass@]host:port[,host:port]/service[/db]``."""
    from redis.sentinel import Sentinel

    address = parse_sentinel(url)
    sentinel = Sentinel(
        list(address.nodes), sentinel_kwargs={"password": address.sentinel_password}, **common
    )
    return sentinel.master_for(
        address.service,
        db=address.db,
        username=address.username,
        password=address.password,
        max_connections=settings.pool_size,
    )


__all__ = ["SCHEMES", "check_url", "create_client", "mask_url"]
