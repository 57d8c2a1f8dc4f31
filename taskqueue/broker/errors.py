"""Which Redis errors mean what: the one home of the error tuples callers catch, and of
the replies that no retry can fix.

A worker retries a failing Redis with backoff, which is right for a connection
that dropped or a failover under way, and wrong for an answer that will be the
same every time: a cluster node redirecting a client that cannot follow (MOVED,
ASK), a user without a permission (NOPERM), a key of the wrong type (WRONGTYPE),
a command the server does not know, scripts that the server forgets as soon as
they are loaded. ``unfixable`` names those, with what to do; everything else is
left to the retries.
"""

from __future__ import annotations

import re

import redis
from redis.exceptions import RedisClusterException

from taskqueue.errors import BrokerError

#: Errors after which the same command may succeed: the connection, not the command, failed.
#: (The cluster client's "no node can be reached" arrives as a ConnectionError: see
#: ``connection``.)
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

#: Everything a background loop (worker, scheduler, autoscaler, health) treats as "Redis failed".
REDIS_ERRORS = (redis.exceptions.RedisError, RedisClusterException, BrokerError)

#: Where the ACL line a taskqueue user needs comes from.
ACL_HINT = "grant the user the ACL line that `python -m taskqueue.broker.acl --url URL` prints"

_COMMAND = re.compile(r"no permissions to run the '([^']+)' command", re.IGNORECASE)
_UNKNOWN = re.compile(r"unknown (?:sub)?command '([^']+)'", re.IGNORECASE)


def _reply(exc: BaseException) -> str:
    """The error text without redis-py's pipeline prefix ("Command # 1 (...) of pipeline
    caused error: ") or a script's location suffix (" script: <sha>, on @user_script:12.")."""
    text = str(exc)
    _, sep, rest = text.partition(" of pipeline caused error: ")
    text = rest if sep else text
    return re.sub(r"\s*script: [0-9a-f]{40}, on @user_script:\d+\.?\s*$", "", text).strip()


def unfixable(exc: BaseException, key: str | None = None) -> str | None:
    """What is wrong and what to do, when ``exc`` is a reply that no retry can change;
    None for an error that a retry may fix (a dropped connection, a failover, a
    cluster still forming: CLUSTERDOWN and TRYAGAIN are left to the retries).

    ``key``: the key found to hold the wrong type, when the caller looked it up
    (a WRONGTYPE reply does not say which key it was).
    """
    if isinstance(exc, BrokerError) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = _reply(exc)
    if isinstance(exc, redis.exceptions.AskError):  # MovedError is one too
        # A cluster client follows redirections itself: one that reaches us came to a client that cannot.
        kind = "MOVED" if isinstance(exc, redis.exceptions.MovedError) else "ASK"
        return (
            f"this server is a Redis Cluster node and the key's slot is served elsewhere "
            f"(it answered {kind} {text}): use redis+cluster://host:port (or rediss+cluster://) "
            "so that the client follows the cluster"
        )
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return f"Redis refused the credentials ({text}): check the user and password in redis.url"
    lowered = text.lower()
    if isinstance(exc, redis.exceptions.NoPermissionError) or "acl failure" in lowered:
        command = _COMMAND.search(text)
        if command:
            missing = f"the permission to run {command[1].upper()} (+{command[1].lower()})"
        elif "key" in lowered:
            missing = "access to a key of the namespace (the user's key pattern must cover it)"
        elif "channel" in lowered:
            missing = "access to a channel"
        else:
            missing = "a permission"
        return f"the Redis user lacks {missing} ({text}): {ACL_HINT}"
    if text.startswith("WRONGTYPE"):
        which = f"the key {key!r}" if key else "a key of the namespace"
        return (
            f"{which} holds a value of the wrong type ({text}): another program wrote it, or "
            "two applications share one redis.namespace; delete the key (`taskqueue purge QUEUE` "
            "for a queue's keys) or give this application another redis.namespace"
        )
    if isinstance(exc, redis.exceptions.NoScriptError):
        # The broker loads the scripts and repeats the call once; this reply came after that.
        return (
            "Redis forgot the Lua scripts right after they were loaded (NOSCRIPT again after "
            "SCRIPT LOAD): scripting is disabled, something runs SCRIPT FLUSH in a loop, or a proxy "
            "sends SCRIPT LOAD and EVALSHA to different servers; taskqueue needs scripts on the "
            "server it talks to (for a cluster, use redis+cluster://)"
        )
    unknown = _UNKNOWN.search(text)
    if unknown or "unknown command called from script" in lowered or "unknown redis command" in lowered:
        name = f" {unknown[1].upper()}" if unknown else " called by a taskqueue script"
        return (
            f"the server does not know the command{name} ({text}): it is older than taskqueue "
            "supports (Redis 6.2 or later, Valkey 7.2 or later) or renames or disables commands "
            "(rename-command)"
        )
    if text.startswith("CROSSSLOT") or "non local key" in lowered:
        return (
            f"a script touched keys of two cluster slots ({text}): report this as a taskqueue bug, "
            "with the server version and the queue names"
        )
    return None


__all__ = ["ACL_HINT", "REDIS_ERRORS", "TRANSIENT", "unfixable"]
