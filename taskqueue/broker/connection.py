"""Turns a URL into a redis-py client: redis, rediss, unix, redis+sentinel, memory."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

import redis

from taskqueue.config import RedisSettings
from taskqueue.errors import ConfigurationError

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "memory")
_PASSWORD = re.compile(r"(?P<head>[a-z+]+://[^:/@]*:)(?P<secret>[^@]*)(?=@)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs, errors and reprs."""
    return _PASSWORD.sub(lambda m: m.group("head") + "***", url or "")


def check_url(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"redis.url = {mask_url(url)!r}: unsupported scheme {scheme or '(none)'!r}; "
            f"use one of {', '.join(s + '://' for s in SCHEMES)}"
        )
    return scheme


def create_client(url: str, settings: RedisSettings) -> redis.Redis:
    """A client whose pool blocks (rather than fails) when all connections are busy."""
    scheme = check_url(url)
    common = {
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
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=settings.pool_size, timeout=settings.connection_timeout, **common
    )
    return redis.Redis(connection_pool=pool)


def _sentinel_client(url: str, settings: RedisSettings, common: dict) -> redis.Redis:
    """``redis+sentinel://[user:pass@]host:port[,host:port]/service[/db]``."""
    from redis.sentinel import Sentinel

    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    auth, hosts = (netloc[0], netloc[1]) if len(netloc) == 2 else ("", netloc[0])
    username, _, password = auth.partition(":")
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigurationError(
            f"redis.url = {mask_url(url)!r}: a sentinel URL names the service, "
            "as redis+sentinel://host:26379/mymaster[/db]"
        )
    nodes = []
    for host in hosts.split(","):
        name, _, port = host.partition(":")
        nodes.append((name, int(port or 26379)))
    db = int(path[1]) if len(path) > 1 else 0
    query = parse_qs(parts.query)
    sentinel = Sentinel(
        nodes,
        sentinel_kwargs={"password": query.get("sentinel_password", [None])[0]},
        **common,
    )
    return sentinel.master_for(
        path[0],
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
        max_connections=settings.pool_size,
    )
