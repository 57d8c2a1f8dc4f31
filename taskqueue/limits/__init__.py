"""Flow control (DESIGN 11): uniqueness, debounce, rate and concurrency limits.

``options`` checks what ``@q.task(...)`` and ``apply_async(...)`` were given and
keeps it as a ``Limits``; ``requests`` turns one call into the two strings the
enqueue script stores with the task (``EnqueueRequest.limit`` and ``.dedup``).
Everything that holds a task back happens in Redis, in the fetch script
(``broker/scripts/_lib_limits.lua``), so limits hold across every process.
"""

from taskqueue.limits.options import Limits, RateLimit, check_unique_call, make_limits, parse_rate
from taskqueue.limits.requests import dedup_field, limit_field

__all__ = [
    "Limits",
    "RateLimit",
    "check_unique_call",
    "dedup_field",
    "limit_field",
    "make_limits",
    "parse_rate",
]
