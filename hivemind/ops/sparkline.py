"""Terminal sparklines: one block character per point, a space where a point is missing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

BARS: Final = "▁▂▃▄▅▆▇█"
GAP: Final = " "


def sparkline(
    values: Sequence[float | None], *, low: float | None = None, high: float | None = None
) -> str:
    """One bar per value, scaled between `low` and `high` (default: the values' own
    minimum and maximum); None is a gap. A flat series is drawn at the bottom when it is
    zero and mid-height otherwise, so "nothing" and "steady" look different."""
    present = [v for v in values if v is not None]
    if not present:
        return GAP * len(values)
    bottom = min(present) if low is None else low
    top = max(present) if high is None else high
    bars = []
    for value in values:
        if value is None:
            bars.append(GAP)
        elif top <= bottom:
            bars.append(BARS[0] if value == 0 else BARS[len(BARS) // 2 - 1])
        else:
            share = (min(max(value, bottom), top) - bottom) / (top - bottom)
            bars.append(BARS[min(len(BARS) - 1, int(share * len(BARS)))])
    return "".join(bars)


def bucketed(
    timestamps: Sequence[datetime],
    values: Sequence[float],
    *,
    start: datetime,
    period: int,
    count: int,
) -> list[float | None]:
    """Points placed on a grid of `count` periods from `start`: each slot holds the mean
    of the points in it, or None. Points outside the grid are dropped."""
    sums: list[float] = [0.0] * count
    seen: list[int] = [0] * count
    for moment, value in zip(timestamps, values, strict=True):
        slot = int((moment - start).total_seconds() // period)
        if 0 <= slot < count:
            sums[slot] += value
            seen[slot] += 1
    return [sums[i] / seen[i] if seen[i] else None for i in range(count)]
