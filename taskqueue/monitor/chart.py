"""The monitor's throughput chart: counter history in, an inline SVG bar chart out.

Rates are differences between successive readings of the namespace's
counters, so the chart covers the time since the monitor opened (at least a
minute, at most ``history_minutes``). Plain SVG: no plotting library, and it
renders in any notebook front end.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

GREEN, RED, GREY = "#2e7d32", "#c62828", "#9e9e9e"

#: Bars in the throughput chart.
BINS = 60


def nice_max(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n that is >= value (axis and bar scales)."""
    scale = 1.0
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def _compact(value: float) -> str:
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def rate_chart(bins: list[tuple[int, int]], window_s: float, width: int = 380) -> str:
    """An inline SVG bar chart of tasks processed (green) and failed (red, stacked on top)
    per minute; ``bins`` are counts per equal slice of the last ``window_s`` seconds, oldest
    first."""
    height, left, bottom, top = 110, 46, 18, 8
    plot_w, plot_h = width - left - 6, height - bottom - top
    per_min = 60 / (window_s / len(bins)) if bins else 0.0
    peak = nice_max(max([1.0] + [(p + f) * per_min for p, f in bins]))
    span = f"{window_s / 60:g} min" if window_s >= 60 else f"{window_s:g} s"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'style="font:10px sans-serif" role="img" aria-label="throughput chart">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ddd"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" fill="#555">{_compact(peak)}/min</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" fill="#555">0</text>',
        f'<text x="{left}" y="{height - 4}" fill="#555">-{span}</text>',
        f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end" fill="#555">now</text>',
    ]
    bar_w = plot_w / max(1, len(bins))
    for i, (processed, failed) in enumerate(bins):
        x = left + i * bar_w
        base: float = top + plot_h
        for count, colour in ((processed, GREEN), (failed, RED)):
            if count:
                h = plot_h * count * per_min / peak
                base -= h
                parts.append(
                    f'<rect x="{x + 0.5:.1f}" y="{base:.1f}" width="{max(1.0, bar_w - 1):.1f}" '
                    f'height="{h:.1f}" fill="{colour}"/>'
                )
    if not bins:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="{GREY}">'
            "collecting: rates appear after the second refresh</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Rates:
    """What the counter history gives: the chart's bins and window, and the last minute."""

    bins: list[tuple[int, int]]
    window_s: float
    #: Processed and failed in the last minute (or since the monitor opened, if sooner).
    recent: tuple[int, int]
    #: Seconds the history covers, at most 60 (the span of ``recent``).
    seen_s: float


class RateHistory:
    """Successive readings of the processed and failed counters, kept for ``history_s``."""

    def __init__(self, history_s: float, interval: float) -> None:
        self.history_s = history_s
        self.interval = interval
        self._counters: deque[tuple[float, int, int]] = deque()

    def add(self, now_s: float, processed: int, failed: int) -> Rates | None:
        """Record one reading; the rates so far, None before the second reading."""
        self._counters.append((now_s, processed, failed))
        while self._counters and now_s - self._counters[0][0] > self.history_s + self.interval:
            self._counters.popleft()
        if len(self._counters) < 2:
            return None
        window = min(self.history_s, max(60.0, now_s - self._counters[0][0]))
        slot = window / BINS
        bins = [[0, 0] for _ in range(BINS)]
        recent = [0, 0]
        for (_, p0, f0), (t1, p1, f1) in itertools.pairwise(self._counters):
            # Counters only grow; a drop means they were reset (FLUSHDB): no rate for it.
            done, lost = max(0, p1 - p0), max(0, f1 - f0)
            age = now_s - t1
            if age < window:
                index = BINS - 1 - min(BINS - 1, int(age // slot))
                bins[index][0] += done
                bins[index][1] += lost
            if age < 60:
                recent[0] += done
                recent[1] += lost
        return Rates(
            bins=[(p, f) for p, f in bins],
            window_s=window,
            recent=(recent[0], recent[1]),
            seen_s=min(60.0, now_s - self._counters[0][0]),
        )


__all__ = ["BINS", "GREEN", "GREY", "RED", "RateHistory", "Rates", "nice_max", "rate_chart"]
