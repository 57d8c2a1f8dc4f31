"""One call's flow control as the enqueue script stores it (``_lib_limits.lua``).

- ``limit_field``: ``"<interval ms>|<concurrency>|<queue> <bucket>"``, kept in the
  task's hash, where the fetch and the scripts that end an attempt read it;
- ``dedup_field``: ``"u|<ms>|<queue> <key>"`` (unique_for) or ``"d|<ms>|<queue> <key>"``
  (debounce), read once by the enqueue script.

A bucket is the task name, or ``<name>:<argument>=<value>`` with ``limit_by``; the
default uniqueness key is the task name and a digest of its bound arguments, so
``f(1, b=2)`` and ``f(1, 2)`` are the same call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from taskqueue.limits.options import Limits
from taskqueue.serialization import dumps

#: A limit_by value longer than this (as text) is replaced by its digest in the key.
_MAX_VALUE_TEXT = 100


def _digest(value: Any) -> str:
    return hashlib.sha1(dumps(value, what="the arguments of a unique task")).hexdigest()


def value_text(value: Any) -> str:
    """How a ``limit_by`` argument's value names its bucket."""
    if isinstance(value, str) and len(value) <= _MAX_VALUE_TEXT:
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return "#" + _digest(value)


def _ms(seconds: float) -> str:
    return f"{seconds:.4f}".rstrip("0").rstrip(".")


def limit_field(limits: Limits | None, name: str, queue: str, arguments: Mapping[str, Any]) -> str:
    """The task's stored limits ('' when it has none)."""
    if limits is None or not limits.limited:
        return ""
    bucket = name
    if limits.limit_by is not None:
        bucket += f":{limits.limit_by}={value_text(arguments.get(limits.limit_by))}"
    interval = _ms(limits.rate.interval_ms) if limits.rate is not None else "0"
    return f"{interval}|{limits.concurrency or 0}|{queue} {bucket}"


def dedup_field(
    limits: Limits | None,
    name: str,
    queue: str,
    arguments: Mapping[str, Any],
    unique_key: str | None,
    unique_for: float | None,
) -> tuple[str, float | None]:
    """(the dedup spec or '', the delay in seconds a debounced call is sent with, or None)."""
    window = limits.debounce if limits is not None else None
    if window is not None:
        if unique_for is not None:
            raise ValueError(f"task {name} is debounced: unique_for= does not apply to its calls")
        key = unique_key or name
        return f"d|{int(window * 1000)}|{queue} {key}", window
    seconds = unique_for if unique_for is not None else (limits.unique_for if limits is not None else None)
    if seconds is None:
        if unique_key is not None:
            raise ValueError(
                f"unique_key={unique_key!r} needs unique_for= (seconds): pass it with the call "
                f"or declare @task(unique_for=...) on {name}"
            )
        return "", None
    key = unique_key or f"{name}:{_digest([name, sorted(arguments.items())])}"
    return f"u|{max(1, int(seconds * 1000))}|{queue} {key}", None


__all__ = ["dedup_field", "limit_field", "value_text"]
