"""The flow-control options of a task, checked once when the task is declared.

A bad option raises ``ValueError`` naming the option, the value and what to
write instead, at decoration time, so nothing odd reaches Redis.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")
#: Longest unique_key accepted (it becomes part of a Redis key).
MAX_UNIQUE_KEY = 512


@dataclass(frozen=True)
class RateLimit:
    """``count`` starts per ``period`` seconds, spread evenly (one every ``period / count``)."""

    count: int
    period: float
    text: str

    @property
    def interval_ms(self) -> float:
        return self.period * 1000.0 / self.count


@dataclass(frozen=True)
class Limits:
    """A task's flow control; None fields are off."""

    unique_for: float | None = None
    debounce: float | None = None
    rate: RateLimit | None = None
    concurrency: int | None = None
    limit_by: str | None = None

    @property
    def limited(self) -> bool:
        """Whether the fetch holds this task back by a rate or concurrency limit."""
        return self.rate is not None or self.concurrency is not None


def parse_rate(value: Any) -> RateLimit:
    """``"10/s"``, ``"100/m"``, ``"5/h"`` -> ``RateLimit``; ValueError saying what is accepted."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(
            f"rate_limit must be a string 'N/s', 'N/m' or 'N/h' with N >= 1 (e.g. '10/s'), got {value!r}"
        )
    return RateLimit(int(match.group(1)), _PERIODS[match.group(2)], f"{int(match.group(1))}/{match.group(2)}")


def _seconds(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{what} must be a number of seconds > 0, got {value!r}")
    return float(value)


def make_limits(
    task: str,
    *,
    unique_for: Any = None,
    debounce: Any = None,
    rate_limit: Any = None,
    concurrency: Any = None,
    limit_by: Any = None,
    parameters: Sequence[str] | None = None,
) -> Limits | None:
    """The checked options of task ``task`` (None when it sets none).

    ``parameters``: the names ``limit_by`` may pick from (None: not known, not checked).
    """
    unique = _seconds(unique_for, f"task {task}: unique_for")
    window = _seconds(debounce, f"task {task}: debounce")
    if unique is not None and window is not None:
        raise ValueError(
            f"task {task}: pass unique_for or debounce, not both (debounce already keeps one task per window)"
        )
    rate = parse_rate(rate_limit) if rate_limit is not None else None
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ValueError(f"task {task}: concurrency must be an int >= 1, got {concurrency!r}")
    if limit_by is not None:
        if not isinstance(limit_by, str) or not limit_by:
            raise ValueError(
                f"task {task}: limit_by must be the name of one of its arguments, got {limit_by!r}"
            )
        if rate is None and concurrency is None:
            raise ValueError(f"task {task}: limit_by={limit_by!r} needs rate_limit= or concurrency= to split")
        if parameters is not None and limit_by not in parameters:
            raise ValueError(
                f"task {task}: limit_by={limit_by!r} is not one of its arguments "
                f"({', '.join(parameters) or 'none'})"
            )
    if unique is None and window is None and rate is None and concurrency is None:
        return None
    return Limits(unique, window, rate, concurrency, limit_by)


def check_unique_call(unique_key: Any, unique_for: Any) -> tuple[str | None, float | None]:
    """``apply_async(unique_key=..., unique_for=...)`` checked: (key, seconds)."""
    if unique_key is not None and (
        not isinstance(unique_key, str) or not unique_key or len(unique_key) > MAX_UNIQUE_KEY
    ):
        raise ValueError(
            f"unique_key must be a non-empty string of at most {MAX_UNIQUE_KEY} characters, "
            f"got {unique_key!r}"
        )
    return unique_key, _seconds(unique_for, "unique_for")


__all__ = ["MAX_UNIQUE_KEY", "Limits", "RateLimit", "check_unique_call", "make_limits", "parse_rate"]
