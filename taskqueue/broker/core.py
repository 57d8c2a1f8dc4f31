"""What every part of the Redis broker shares: the client, the keys, the scripts,
and the two ways a call can fail.

Producer calls go through ``producer_call``: transient connection errors are
retried with tenacity (bounded by ``redis.retry_attempts`` and
``redis.retry_max_seconds``), then raised as ``BrokerError``. Worker-side and
scheduler-side calls raise at once and their loop decides how to back off, so a
worker never blocks inside a retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
import tenacity

from taskqueue.broker.connection import mask_url
from taskqueue.broker.errors import TRANSIENT, unfixable
from taskqueue.broker.keys import Keys
from taskqueue.broker.scripts import Scripts
from taskqueue.config import Settings
from taskqueue.errors import BrokerError

T = TypeVar("T")


class RedisCore:
    """Knows the key layout and the scripts; holds no task state of its own."""

    def __init__(self, client: redis.Redis, settings: Settings, url: str = "") -> None:
        self.client = client
        self.settings = settings
        #: Masked: safe for logs, errors and reprs.
        self.url = mask_url(url)
        self.keys = Keys(settings.redis.namespace)
        self.scripts = Scripts()
        #: (most dead letters per queue, their ttl in ms), as the scripts take them.
        self._dead = (
            int(settings.dead_letter.max_size),
            int(settings.dead_letter.ttl * 1000),
        )
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TRANSIENT),
            stop=(
                tenacity.stop_after_attempt(max(1, settings.redis.retry_attempts))
                | tenacity.stop_after_delay(settings.redis.retry_max_seconds)
            ),
            wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0),
            reraise=True,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, namespace={self.keys.namespace!r})"

    # -- errors -----------------------------------------------------------------------
    def wrap_error(self, exc: redis.exceptions.RedisError, doing: str) -> BrokerError:
        """The ``BrokerError`` for ``exc``: what failed, while doing what, and what to do about it."""
        text = str(exc)
        advice = unfixable(exc)
        if advice is not None:  # no retry changes this answer: say what to do instead
            message = f"Redis refused a command while {doing}: {advice}"
        elif isinstance(exc, redis.exceptions.ClusterDownError):
            message = (
                f"the Redis Cluster is down while {doing} ({exc}): a slot has no serving master "
                "(a failover under way, or nodes lost); it may come back"
            )
        elif isinstance(exc, redis.exceptions.ReadOnlyError) or "read only replica" in text:
            # redis-py files this under ConnectionError; it is retried (a failover
            # may be under way) but reported for what it is.
            message = f"Redis is a read-only replica while {doing}: {exc}. Point redis.url at the primary"
        elif isinstance(exc, TRANSIENT):
            message = f"cannot reach Redis while {doing}: {exc}"
        elif "OOM" in text or "maxmemory" in text:
            message = (
                f"Redis is out of memory while {doing}: {exc}. Free memory or raise maxmemory; "
                "taskqueue needs maxmemory-policy noeviction so that queued tasks are never evicted"
            )
        else:
            message = f"Redis failed while {doing}: {exc}"
        error = BrokerError(message, url=self.url)
        error.__cause__ = exc
        return error

    def producer_call(self, doing: str, fn: Callable[[], T]) -> T:
        """Run fn, retrying transient connection errors, then raise BrokerError."""
        try:
            return self._retrying(fn)
        except redis.exceptions.RedisError as exc:
            raise self.wrap_error(exc, doing) from exc

    # -- running scripts ------------------------------------------------------------------
    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """One script call, one round trip (loading the scripts first after NOSCRIPT)."""
        return self.scripts.run(self.client, name, keys, args)

    def _pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """Run a pipeline of script calls; after NOSCRIPT load the scripts and run it again.

        Safe to repeat: a NOSCRIPT answer means the server lost all scripts,
        so none of the script calls in the pipeline took effect. Plain commands
        did, and ``build`` is called again for the repeat: a caller that adds
        plain commands must add them only once.
        """
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self.scripts.load_all(self.client)
            except redis.exceptions.ResponseError as exc:
                if "NOSCRIPT" not in str(exc) or attempt == 2:
                    raise
                self.scripts.load_all(self.client)
        raise AssertionError("unreachable")


__all__ = ["RedisCore"]
