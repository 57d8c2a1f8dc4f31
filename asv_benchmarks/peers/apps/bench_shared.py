"""What every library's no-op task shares: the server URL and the completion counter.

Each task of the comparison does exactly one INCR on the same key, whatever
the library, and the driver waits until the counter reaches N: completion
is detected the same way for everyone.
"""

import os

import redis

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
COUNTER = os.environ.get("BENCH_COUNTER", "bench:done")

_client = redis.Redis.from_url(URL)


def count_one() -> None:
    _client.incr(COUNTER)
