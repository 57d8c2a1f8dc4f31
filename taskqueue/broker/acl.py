"""The Redis ACL a taskqueue client needs: exactly these commands, on the keys
of its namespace, no channels.

Run workers and producers as a user with only these rights, and whoever
steals their credentials can neither read other data in the same Redis nor
run arbitrary scripts (``EVAL``) or administrative commands (``CONFIG``,
``FLUSHALL``, ``KEYS``). ``tests/security/test_acl.py`` runs the library
against a real server with this user and checks that nothing was refused.
"""

from __future__ import annotations

from taskqueue.broker.keys import Keys

#: Sent by the client itself: script loading and calls, blocking waits, reads for
#: inspection, transactions, the server clock, and INFO for the start-up check
#: of maxmemory-policy. CLIENT SETINFO is redis-py's handshake.
CLIENT_COMMANDS = (
    "evalsha", "script|load", "multi", "exec", "ping", "time", "info", "client|setinfo",
    "blpop", "brpoplpush", "rpush", "lrange", "llen", "del", "expire", "pexpire",
    "hgetall", "zrange", "zrangebyscore", "zcard", "zrem", "sadd", "srem", "smembers", "lindex",
    "watch", "unwatch",
)  # fmt: skip

#: Called inside the Lua scripts (ACL rules apply there too).
SCRIPT_COMMANDS = (
    "exists", "hget", "hmget", "hset", "hdel", "hincrby", "lpop", "lpush", "lrem", "ltrim",
    "persist", "rename", "sismember", "type", "zadd", "zremrangebyrank", "zremrangebyscore",
    "zrevrange", "zscore",
)  # fmt: skip


def acl_rules(namespace: str = "taskqueue") -> list[str]:
    """The rules of ``ACL SETUSER`` (without the user name and password)."""
    commands = dict.fromkeys(CLIENT_COMMANDS + SCRIPT_COMMANDS)
    return ["resetkeys", f"~{Keys(namespace).base}*", "resetchannels", "-@all", *(f"+{c}" for c in commands)]


def acl_setuser(user: str = "taskqueue", namespace: str = "taskqueue", password: str = "<password>") -> str:
    """The whole ``ACL SETUSER`` line, as an administrator would type it."""
    return " ".join(["ACL SETUSER", user, "on", f">{password}", *acl_rules(namespace)])
