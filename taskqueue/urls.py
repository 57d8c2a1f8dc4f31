"""Redis URLs: which schemes taskqueue takes, what makes one malformed, how a password is masked.

The one home of these rules: the settings check ``redis.url`` with them, the
broker checks the URL it is given before connecting (a URL passed in code
never went through the settings), and the CLI checks ``--url``. So a bad URL
is one line naming it (password masked) and what is wrong, wherever it comes
from. This module imports nothing of taskqueue but its errors, so the
settings and the broker both use it without importing each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from redis.connection import parse_url

from taskqueue.errors import ConfigurationError

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster", "memory")
#: Schemes served by redis-py's ``RedisCluster``.
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
MASK = "***"
#: The password of ``scheme://user:password@host`` (the user part may be empty).
_USERINFO_PASSWORD = re.compile(r"(?P<head>[a-z+]+://[^:/@]*:)(?P<secret>[^@]*)(?=@)", re.IGNORECASE)
#: ``?password=...`` and ``&sentinel_password=...`` in the query.
_QUERY_PASSWORD = re.compile(r"(?i)(password=)[^&]*")
SENTINEL_PORT = 26379


def mask_url(url: str) -> str:
    """The URL with every password replaced by ***, for logs, errors and reprs."""
    masked = _USERINFO_PASSWORD.sub(lambda m: m.group("head") + MASK, url or "")
    return _QUERY_PASSWORD.sub(r"\g<1>" + MASK, masked)


def scheme_of(url: str) -> str:
    """The scheme, lower case; "" when the URL has none."""
    return url.split("://", 1)[0].lower() if "://" in url else ""


@dataclass(frozen=True)
class ClusterAddress:
    """``redis+cluster://[user:password@]host:port[,host:port]/``, parsed: the startup nodes."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = None


def _host_list(hosts: str, example: str, default_port: int, what: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":") if ":" in host else (host.strip(), "", "")
        if not name:
            raise ValueError(f"no host in {host.strip() or '(empty)'!r}; e.g. {example}")
        if port and not port.isdigit():
            raise ValueError(f"the port of {what} {name!r} must be a number, got {port!r}")
        nodes.append((name, int(port or default_port)))
    return tuple(nodes)


def parse_cluster(url: str) -> ClusterAddress:
    """Split a cluster URL into startup nodes and credentials; ValueError saying what is wrong.

    A cluster has no databases (only db 0), so a path other than ``/`` is refused.
    """
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    username, _, password = auth.partition(":")
    example = "redis+cluster://host:7000,host:7001/"
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(
            f"a Redis Cluster has only database 0; drop {parts.path!r} from the URL, e.g. {example}"
        )
    return ClusterAddress(
        nodes=_host_list(hosts, example, 6379, "node"),
        tls=scheme_of(url) == "rediss+cluster",
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


@dataclass(frozen=True)
class SentinelAddress:
    """``redis+sentinel://[user:password@]host:port[,host:port]/service[/db]``, parsed."""

    nodes: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def parse_sentinel(url: str) -> SentinelAddress:
    """Split a sentinel URL into what ``redis.sentinel.Sentinel`` needs; ValueError saying what is wrong."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    username, _, password = auth.partition(":")
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a sentinel URL names the service: redis+sentinel://host:26379/mymaster[/db]")
    nodes = _host_list(hosts, "redis+sentinel://host:26379/mymaster", SENTINEL_PORT, "sentinel")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("the database after the service must be a number: redis+sentinel://host/mymaster/0")
    query = parse_qs(parts.query)
    return SentinelAddress(
        nodes=nodes,
        service=path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_password=query.get("sentinel_password", [None])[0],
    )


def url_problem(url: str) -> str | None:
    """What is wrong with ``url``, in one phrase; None when taskqueue can connect with it.

    An empty URL is fine: it means the embedded server.
    """
    if not url:
        return None
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        return (
            f"unsupported scheme {scheme or '(none)'!r}; use one of "
            f"{', '.join(s + '://' for s in SCHEMES)} (or leave empty for the embedded server)"
        )
    if scheme in ("redis+sentinel", *CLUSTER_SCHEMES):
        try:
            (parse_sentinel if scheme == "redis+sentinel" else parse_cluster)(url)
        except ValueError as exc:
            return str(exc)
    elif scheme != "memory":
        return _redis_url_problem(url, scheme)
    return None


def _redis_url_problem(url: str, scheme: str) -> str | None:
    """redis://, rediss://, unix://: read by redis-py's own parser, as the client will read them."""
    try:
        parsed = parse_url(url)
    except ValueError as exc:
        return f"not a valid URL: {mask_url(str(exc))}"
    if scheme == "unix":
        return None
    database = url.split("://", 1)[1].split("?", 1)[0].partition("/")[2]
    if database and not database.isdigit():
        return f"the database after the host must be a number, e.g. {scheme}://host:6379/0"
    if not parsed.get("host"):
        return f"no host; e.g. {scheme}://localhost:6379/0"
    return None


def check_url(url: str, what: str = "redis.url") -> str:
    """The URL's scheme, or a one-line ConfigurationError naming the (masked) URL and the problem."""
    problem = url_problem(url)
    if problem is not None:
        raise ConfigurationError(f"{what} = {mask_url(url)!r}: {problem}")
    return scheme_of(url)


__all__ = [
    "CLUSTER_SCHEMES",
    "MASK",
    "ClusterAddress",
    "SCHEMES",
    "SentinelAddress",
    "check_url",
    "mask_url",
    "parse_cluster",
    "parse_sentinel",
    "scheme_of",
    "url_problem",
]
