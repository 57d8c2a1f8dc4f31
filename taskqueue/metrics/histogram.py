"""Latency figures read from the fixed-bucket histograms the Lua scripts fill.

The scripts only add 1 to a bucket (and the observed value to a sum), so the
memory of a histogram never grows with the number of tasks. The price is that a
percentile is an estimate: it is interpolated inside the bucket it falls in, and
each bucket is 25% wide (1 ms wide below 10 ms, as times are whole milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from taskqueue.broker.scripts import HISTOGRAM_BOUNDS_MS

#: Upper bounds of the buckets in seconds; one more bucket (+Inf) follows the last.
BOUNDS_SECONDS: tuple[float, ...] = tuple(ms / 1000 for ms in HISTOGRAM_BOUNDS_MS)
N_BUCKETS = len(BOUNDS_SECONDS) + 1
#: The 1-2-5 subset of the bounds: the usual size of a Prometheus histogram.
COARSE_BOUNDS_SECONDS: tuple[float, ...] = tuple(
    ms / 1000 for ms in HISTOGRAM_BOUNDS_MS if int(str(ms).rstrip("0") or 0) in (1, 2, 5)
)


def _format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms" if value >= 0.001 or value == 0 else f"{value * 1000:.2f}ms"
    return f"{value:.2f}s" if value < 100 else f"{value:.0f}s"


@dataclass(frozen=True)
class LatencyStats:
    """Count, sum and percentiles (seconds) of one histogram: execution time or queue wait."""

    count: int = 0
    sum_seconds: float = 0.0
    #: Observations per bucket (not cumulative); the last bucket is above the last bound.
    buckets: tuple[int, ...] = (0,) * N_BUCKETS

    @classmethod
    def from_fields(cls, fields: Mapping[str, int], kind: str) -> LatencyStats:
        """Build from ``{"<kind>.<bucket>": n, "<kind>.sum": ms}`` (one task name's fields)."""
        buckets = [0] * N_BUCKETS
        for i in range(N_BUCKETS):
            buckets[i] = max(0, fields.get(f"{kind}.{i}", 0))
        total_ms = fields.get(f"{kind}.sum", 0)
        return cls(sum(buckets), total_ms / 1000, tuple(buckets))

    @classmethod
    def merged(cls, parts: Iterable[LatencyStats]) -> LatencyStats:
        """The histogram of several (e.g. every task name of a queue)."""
        buckets = [0] * N_BUCKETS
        count, total = 0, 0.0
        for part in parts:
            count += part.count
            total += part.sum_seconds
            for i, n in enumerate(part.buckets):
                buckets[i] += n
        return cls(count, total, tuple(buckets))

    @property
    def mean(self) -> float | None:
        return self.sum_seconds / self.count if self.count else None

    def percentile(self, q: float) -> float | None:
        """The q-quantile (0 < q <= 1) in seconds, interpolated inside its bucket;
        None when there is no observation. Above the last bound it is that bound."""
        if not 0 < q <= 1:
            raise ValueError(f"q must be in (0, 1], got {q!r}")
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.buckets):
            if n and seen + n >= rank:
                lower = BOUNDS_SECONDS[i - 1] if i > 0 else 0.0
                if i >= len(BOUNDS_SECONDS):
                    return lower
                upper = BOUNDS_SECONDS[i]
                return lower + (upper - lower) * (rank - seen) / n
            seen += n
        return BOUNDS_SECONDS[-1]

    @property
    def p50(self) -> float | None:
        return self.percentile(0.50)

    @property
    def p95(self) -> float | None:
        return self.percentile(0.95)

    @property
    def p99(self) -> float | None:
        return self.percentile(0.99)

    def cumulative(self, bounds: Iterable[float] | None = None) -> list[tuple[float, int]]:
        """(upper bound in seconds, observations at or below it), ending with +Inf:
        the shape a Prometheus histogram needs. ``bounds`` picks a subset of
        ``BOUNDS_SECONDS`` (e.g. ``COARSE_BOUNDS_SECONDS``); the counts stay exact."""
        keep = None if bounds is None else set(bounds)
        if keep is not None and not keep <= set(BOUNDS_SECONDS):
            raise ValueError(
                f"bounds must be taken from BOUNDS_SECONDS, got {sorted(keep - set(BOUNDS_SECONDS))}"
            )
        out, seen = [], 0
        for bound, n in zip((*BOUNDS_SECONDS, float("inf")), self.buckets, strict=True):
            seen += n
            if keep is None or bound in keep or bound == float("inf"):
                out.append((bound, seen))
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "count": self.count,
            "sum_seconds": self.sum_seconds,
            "mean": self.mean,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            # Non-cumulative, buckets that were hit only: upper bound (s) -> count.
            "buckets": {
                ("+Inf" if bound == float("inf") else f"{bound:g}"): n
                for bound, n in zip((*BOUNDS_SECONDS, float("inf")), self.buckets, strict=True)
                if n
            },
        }

    def __repr__(self) -> str:
        if not self.count:
            return "LatencyStats(count=0)"
        return (
            f"LatencyStats(count={self.count}, mean={_format_seconds(self.mean)}, "
            f"p50={_format_seconds(self.p50)}, p95={_format_seconds(self.p95)}, "
            f"p99={_format_seconds(self.p99)})"
        )
