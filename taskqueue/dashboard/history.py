"""The per-minute history (``Keys.minutes_prefix``) turned into what the overview charts:
per queue and minute, succeeded and failed attempts and the p50/p95 execution time;
per task name over the whole range, the same figures."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from taskqueue.metrics.histogram import N_BUCKETS, LatencyStats

#: The ranges the overview offers, in minutes.
RANGES = {"1h": 60, "6h": 360, "24h": 1440}
#: Minutes per chart point for each range: at most 96 points, summed in Redis.
STEPS = {"1h": 1, "6h": 5, "24h": 15}


@dataclasses.dataclass
class Figures:
    ok: int = 0
    failed: int = 0
    latency: LatencyStats = dataclasses.field(default_factory=LatencyStats)

    @property
    def p50_ms(self) -> float | None:
        p = self.latency.percentile(0.5)
        return None if p is None else p * 1000

    @property
    def p95_ms(self) -> float | None:
        p = self.latency.percentile(0.95)
        return None if p is None else p * 1000


def _split(minute: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """``{"ok|add": 3, "h4|add": 3}`` -> ``{"add": {"ok": 3, "h4": 3}}``."""
    out: dict[str, dict[str, int]] = {}
    for field, n in minute.items():
        kind, sep, name = field.partition("|")
        if sep:
            out.setdefault(name, {})[kind] = n
    return out


def _figures(parts: Sequence[Mapping[str, int]]) -> Figures:
    buckets = [0] * N_BUCKETS
    ok = failed = total_ms = 0
    for p in parts:
        ok += p.get("ok", 0)
        failed += p.get("fail", 0)
        total_ms += p.get("ms", 0)
        for i in range(N_BUCKETS):
            buckets[i] += p.get(f"h{i}", 0)
    return Figures(ok, failed, LatencyStats(sum(buckets), total_ms / 1000, tuple(buckets)))


@dataclasses.dataclass
class QueueHistory:
    queue: str
    #: One entry per minute, oldest first.
    minutes: list[Figures]
    #: Task name -> figures over the whole range.
    by_task: dict[str, Figures]

    @property
    def total(self) -> Figures:
        return _figures([{"ok": f.ok, "fail": f.failed} for f in self.minutes])


def queue_history(queue: str, minutes: Sequence[Mapping[str, int]]) -> QueueHistory:
    per_minute = [_split(m) for m in minutes]
    names = sorted({n for m in per_minute for n in m})
    return QueueHistory(
        queue,
        [_figures(list(m.values())) for m in per_minute],
        {n: _figures([m[n] for m in per_minute if n in m]) for n in names},
    )


__all__ = ["RANGES", "STEPS", "Figures", "QueueHistory", "queue_history"]
