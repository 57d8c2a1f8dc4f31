"""Text tables for the commands: fixed-width columns, and how wide a task-name column is.

A task name is what a reader copies into ``taskqueue enqueue`` or looks up in
the code, so a table cuts one only when it is longer than the room the other
columns leave in 80 columns, and never below ``NAME_FLOOR`` characters: past
that, the line grows instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: The fewest characters of a task name any table shows.
NAME_FLOOR = 40
LINE = 80


def cut(value: Any, width: int) -> str:
    """``value`` as text of at most ``width`` characters; a longer one ends in '~'."""
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: max(1, width - 1)] + "~"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[int]) -> str:
    """Fixed-width columns (numbers right-aligned); cells over their width end in '~'."""
    numeric = [bool(rows) and isinstance(rows[0][i], (int, float)) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = []
        for i, (value, width) in enumerate(zip(row, widths, strict=True)):
            text = cut(value, width)
            cells.append(text.rjust(width) if numeric[i] else text.ljust(width))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def name_width(names: Iterable[str], header: str, others: Sequence[int]) -> int:
    """The width of a task-name column beside columns of widths ``others``: the longest
    name (or the header), cut only past what fits in 80 columns, never below NAME_FLOOR."""
    longest = max([len(header), *(len(n) for n in names)])
    room = LINE - sum(others) - 2 * len(others)
    return min(longest, max(NAME_FLOOR, room))


def ago(seconds: float | None) -> str:
    """A duration as a few characters: ``42s``, ``12m``, ``3.5h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


__all__ = ["NAME_FLOOR", "ago", "cut", "name_width", "table"]
