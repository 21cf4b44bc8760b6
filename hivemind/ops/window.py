"""The time window the ops views look at: `--since 1h` style durations, and the metric
period that fits a window into one terminal line."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from hivemind.errors import BadInputError

DEFAULT_SINCE: Final = "1h"
MAX_WINDOW: Final = timedelta(days=30)  # the app log group keeps a month
# One character per point: a window is cut into at most this many metric periods.
MAX_POINTS: Final = 60
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `1h`, `1h30m`, `2d`, `1w` as a timedelta; BadInputError otherwise."""
    compact = text.strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    if not compact or "".join(f"{n}{u}" for n, u in parts) != compact:
        raise BadInputError(
            f"cannot read the duration {text!r}",
            cause="a duration is a number and a unit: s, m, h, d or w",
            next_step="pass e.g. --since 15m, --since 1h or --since 2d",
        )
    duration = timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))
    if duration <= timedelta(0):
        raise BadInputError(
            f"the duration {text!r} is empty", next_step="pass e.g. --since 15m or --since 1h"
        )
    if duration > MAX_WINDOW:
        raise BadInputError(
            f"--since {text} is longer than {MAX_WINDOW.days} days",
            cause="the app's log group keeps a month, and detailed metrics two weeks",
            next_step="pass --since 30d or less",
        )
    return duration


@dataclass(frozen=True)
class Window:
    """From `start` to `end` (UTC), as asked for with `since` (its text, for messages)."""

    start: datetime
    end: datetime
    since: str

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def period(self, minimum: int = 60) -> int:
        """The metric period (a multiple of 60 s, at least `minimum`) that cuts this
        window into at most MAX_POINTS points."""
        per_point = self.seconds / MAX_POINTS
        return max(minimum, 60 * math.ceil(per_point / 60))

    def aligned(self, period: int) -> tuple[datetime, datetime, int]:
        """The window widened to whole periods (as CloudWatch aggregates them): its
        start, its end and the number of periods."""
        start = math.floor(self.start.timestamp() / period) * period
        end = math.ceil(self.end.timestamp() / period) * period
        end = max(end, start + period)
        return (
            datetime.fromtimestamp(start, UTC),
            datetime.fromtimestamp(end, UTC),
            (end - start) // period,
        )


def window(since: str = DEFAULT_SINCE, now: datetime | None = None) -> Window:
    """The window from `since` ago until `now` (default: the clock)."""
    end = now or datetime.now(UTC)
    return Window(start=end - parse_duration(since), end=end, since=since)


def clock(moment: datetime, *, with_date: bool = False) -> str:
    """A moment as people read it in a terminal: UTC time, with the date when asked."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
