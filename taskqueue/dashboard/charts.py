"""Charts drawn by the server as inline SVG: no script, no CDN, readable offline.

Every label goes through ``markupsafe.escape`` (queue names come from settings,
but nothing from outside is trusted in markup).
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 560, 150, 44, 18, 8


def _ticks(top: float) -> list[float]:
    if top <= 0:
        return [0.0]
    return [top * i / 4 for i in range(5)]


def _label(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.1f}"


#: Line colours, by series index (the legend's classes k0, k1... in dashboard.css match).
PALETTE = ("#2b7bb9", "#d9534f", "#5cb85c", "#f0ad4e")


def line_chart(
    title: str, series: Sequence[tuple[str, Sequence[float | None]]], minutes: int, unit: str = ""
) -> Markup:
    """One SVG with a line per (label, values) over the last ``minutes`` minutes; values
    are evenly spaced points, oldest first, None where nothing was observed (the line
    breaks there)."""
    values = [v for _, vs in series for v in vs if v is not None]
    top = max(values) if values else 0.0
    top = top * 1.1 if top else 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - 6, HEIGHT - PAD_BOTTOM - PAD_TOP
    n = max(1, max((len(vs) for _, vs in series), default=1) - 1)

    def x(i: int) -> float:
        return PAD_LEFT + plot_w * i / n

    def y(v: float) -> float:
        return PAD_TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for t in _ticks(top / 1.1 if values else 0):
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - 6}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>'
            f'<text x="{PAD_LEFT - 4}" y="{y(t) + 3:.1f}" class="tick" text-anchor="end">'
            f"{escape(_label(t))}{escape(unit)}</text>"
        )
    parts.append(
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 4}" class="tick">-{minutes} min</text>'
        f'<text x="{WIDTH - 6}" y="{HEIGHT - 4}" class="tick" text-anchor="end">now</text>'
    )
    for k, (label, vs) in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(vs):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(i):.1f},{y(v):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            elif run:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" '
                    f'points="{" ".join(run)}"><title>{escape(label)}</title></polyline>'
                )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i class="k{k % len(PALETTE)}"></i>{escape(label)}</span>'
        for k, (label, _) in enumerate(series)
    )
    return Markup(
        f'<figure class="chart-box"><figcaption>{escape(title)} {legend}</figcaption>'
        f"{''.join(parts)}</figure>"
    )


__all__ = ["line_chart"]
