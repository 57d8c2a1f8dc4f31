"""The Redis ACL a taskqueue client needs: exactly these commands, on the keys
of its namespace, no channels.

Run workers and producers as a user with only these rights, and whoever
steals their credentials can neither read other data in the same Redis nor
run arbitrary scripts (``EVAL``) or administrative commands (``CONFIG``,
``FLUSHALL``, ``KEYS``). ``tests/security/test_acl.py`` runs the library
against a real server with this user and checks that nothing was refused.

The line fits the server it is generated for. ``CLIENT SETINFO`` (redis-py's
handshake on every connection; redis-py ignores the error an older server
answers) came in Redis 7.2. Redis 7.0 refuses a rule naming it ("Unknown
command or category name in ACL") and answers the handshake "unknown
subcommand" before any ACL check, so its line leaves the rule out. Redis 6.2
takes the rule without checking the subcommand, and without it logs an ACL
denial for every connection's handshake, so its line keeps it. Everything
else is the same from Redis 6.2 on (``resetchannels`` came in 6.2,
``+command|subcommand`` rules in 6.0); the key pattern is the plain ``~``,
not the read/write selectors ``%R~``/``%W~`` that only 7.0 and later know.
Valkey reports the Redis version it is compatible with (7.2.4 for Valkey 8),
which its ACL rules follow.

``python -m taskqueue.broker.acl --url redis://admin@host:6379/0`` prints the
line for that server; ``--server-version 7.0`` for a server named by version.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from taskqueue.broker.keys import Keys

#: Sent by the client itself: script loading and calls, blocking waits, reads for
#: inspection, transactions, the server clock, and INFO for the start-up check
#: of maxmemory-policy. CLIENT SETINFO is redis-py's handshake (see above).
CLIENT_COMMANDS = (
    "evalsha", "script|load", "multi", "exec", "ping", "time", "info", "client|setinfo",
    "blpop", "brpoplpush", "rpush", "lrange", "llen", "del", "expire", "pexpire",
    "hgetall", "zrange", "zrangebyscore", "zcard", "zrem", "sadd", "srem", "smembers", "lindex",
    "watch", "unwatch", "wait", "scard", "srandmember",
)  # fmt: skip

#: Called inside the Lua scripts (ACL rules apply there too).
SCRIPT_COMMANDS = (
    "exists", "hget", "hmget", "hset", "hdel", "hincrby", "lpop", "lpush", "lrem", "ltrim",
    "persist", "pexpireat", "rename", "sismember", "type", "zadd", "zremrangebyrank", "zremrangebyscore",
    "zrevrange", "zscore", "get", "set", "scard", "pttl",
)  # fmt: skip

#: What redis-py's cluster client sends besides: the slot map, and the command table it
#: reads once to find the keys of each command.
CLUSTER_COMMANDS = ("cluster|slots", "command")

#: Rules that some servers refuse: from the first version that refuses each, up to (not
#: including) the first that takes it again.
REFUSED: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {"client|setinfo": ((7, 0), (7, 2))}

#: The oldest server the line is made for (``resetchannels`` came in 6.2).
OLDEST = (6, 2)


def parse_version(version: str | Sequence[int]) -> tuple[int, int]:
    """``"7.0.15"``, ``"7.0"`` or ``(7, 0, 15)`` -> ``(7, 0)``."""
    parts = version.split(".") if isinstance(version, str) else list(version)
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except (ValueError, IndexError, TypeError):
        raise ValueError(f"not a Redis version: {version!r} (expected e.g. '7.0' or '7.0.15')") from None
    return major, minor


def server_version(client: Any) -> tuple[int, int]:
    """The Redis version a server reports in ``INFO server`` (a redis-py client)."""
    return parse_version(str(client.info("server")["redis_version"]))


def acl_commands(version: str | Sequence[int] | None = None, cluster: bool = False) -> list[str]:
    """The commands to grant on a server of ``version`` (None: 7.2 and later, Valkey 7.2 and 8),
    with those of the cluster client on a cluster node."""
    commands = list(dict.fromkeys(CLIENT_COMMANDS + SCRIPT_COMMANDS + (CLUSTER_COMMANDS if cluster else ())))
    if version is None:
        return commands
    at = parse_version(version)
    if at < OLDEST:
        raise ValueError(f"Redis {at[0]}.{at[1]} is too old: taskqueue needs Redis 6.2 or later")
    return [c for c in commands if not (c in REFUSED and REFUSED[c][0] <= at < REFUSED[c][1])]


def acl_rules(
    namespace: str = "taskqueue", version: str | Sequence[int] | None = None, cluster: bool = False
) -> list[str]:
    """The rules of ``ACL SETUSER`` (without the user name and password) for a server of
    ``version`` (None: 7.2 and later, Valkey 7.2 and 8); ``cluster`` for every node of a
    Redis Cluster. The keys: the namespace's ``{namespace}`` and its queues' ``{namespace/queue}``."""
    return [
        "resetkeys", f"~{Keys(namespace).base}*", f"~{{{namespace}/*", "resetchannels", "-@all",
        *(f"+{c}" for c in acl_commands(version, cluster)),
    ]  # fmt: skip


def acl_setuser(
    user: str = "taskqueue",
    namespace: str = "taskqueue",
    password: str = "<password>",
    version: str | Sequence[int] | None = None,
    cluster: bool = False,
) -> str:
    """The whole ``ACL SETUSER`` line, as an administrator would type it."""
    return " ".join(["ACL SETUSER", user, "on", f">{password}", *acl_rules(namespace, version, cluster)])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m taskqueue.broker.acl``: print the line for one server."""
    parser = argparse.ArgumentParser(
        prog="python -m taskqueue.broker.acl", description="Print the ACL SETUSER line for a taskqueue user."
    )
    parser.add_argument("--namespace", default="taskqueue")
    parser.add_argument("--user", default="taskqueue")
    server = parser.add_mutually_exclusive_group()
    server.add_argument("--url", help="ask this server its version (an administrator's URL)")
    server.add_argument("--server-version", help="its Redis version, e.g. 7.0 (default: 7.2 and later)")
    parser.add_argument(
        "--cluster", action="store_true", help="for the nodes of a Redis Cluster (set on each)"
    )
    args = parser.parse_args(argv)
    version: str | tuple[int, int] | None = args.server_version
    if args.url:
        import redis

        client = redis.Redis.from_url(args.url, socket_connect_timeout=5, socket_timeout=5)
        try:
            version = server_version(client)
            args.cluster = args.cluster or client.info("cluster").get("cluster_enabled") == 1
        except redis.exceptions.RedisError as exc:
            print(f"cannot ask the server its version: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        finally:
            client.close()
    try:
        print(acl_setuser(args.user, args.namespace, version=version, cluster=args.cluster))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through main() and a subprocess in the tests
    sys.exit(main())
