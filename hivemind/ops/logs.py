"""The app's recent log lines, from CloudWatch Logs.

The CloudWatch agent on each instance ships `/var/log/hivemind/<app>/*.log` to the deployment's
log group (the stack's `AppLogGroup` output), one stream per instance id. This module
reads a window of it with FilterLogEvents and finds the errors in it (see
`hivemind.ops.detect`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from hivemind.ops.api import error_code, explained
from hivemind.ops.window import Window

# The most events one view reads; a busier window is narrowed to its most recent part.
MAX_EVENTS: Final = 10_000
_NARROWINGS: Final = 6  # each keeps the last quarter of the window


class LogEvent(BaseModel):
    """One log event: when, from which stream (an instance id), and its text (which may
    hold several lines when the agent groups them)."""

    model_config = ConfigDict(frozen=True)

    timestamp: datetime | None = None
    stream: str = ""
    message: str


class LogsFetched(BaseModel):
    """A window of a log group: its events, oldest first, and what limited them."""

    model_config = ConfigDict(frozen=True)

    log_group: str
    start: datetime
    end: datetime
    events: tuple[LogEvent, ...]
    group_exists: bool = True
    narrowed: bool = False  # the window held more than MAX_EVENTS: only its end was read


def fetch_log_events(
    logs: Any, log_group: str, window: Window, *, max_events: int = MAX_EVENTS
) -> LogsFetched:
    """Every event of `log_group` in `window`, oldest first, across its streams. A window
    with more than `max_events` events is narrowed to its most recent part (said in
    `narrowed`). A log group that does not exist gives no events and `group_exists`
    False; any other AWS error is a HiveMindError."""
    start = window.start
    narrowed = False
    events: list[LogEvent] = []
    for _ in range(_NARROWINGS):
        read, complete = _read(logs, log_group, start, window.end, max_events)
        if read is None:
            return LogsFetched(
                log_group=log_group,
                start=start,
                end=window.end,
                events=(),
                group_exists=False,
            )
        events = read
        if complete:
            break
        narrowed = True
        start = window.end - (window.end - start) / 4
    # Several streams come back one after the other: order them by time (stable, so
    # the lines of one stream keep their order within a millisecond).
    ordered = sorted(events, key=lambda e: e.timestamp or window.start)[-max_events:]
    return LogsFetched(
        log_group=log_group,
        start=start,
        end=window.end,
        events=tuple(ordered),
        narrowed=narrowed,
    )


def _read(
    logs: Any, log_group: str, start: datetime, end: datetime, max_events: int
) -> tuple[list[LogEvent] | None, bool]:
    """(events, complete): None when the group does not exist; complete is False when
    there were more than `max_events`."""
    import botocore.exceptions

    events: list[LogEvent] = []
    request: dict[str, Any] = {
        "logGroupName": log_group,
        "startTime": int(start.timestamp() * 1000),
        "endTime": int(end.timestamp() * 1000),
        "limit": min(10_000, max_events + 1),
    }
    with explained(
        what="could not read the app's logs",
        action="logs:FilterLogEvents",
        where=f"log group {log_group}",
    ):
        while True:
            try:
                page = logs.filter_log_events(**request)
            except botocore.exceptions.ClientError as error:
                if error_code(error) == "ResourceNotFoundException":
                    return None, True
                raise
            for item in page.get("events", []):
                events.append(
                    LogEvent(
                        timestamp=datetime.fromtimestamp(item["timestamp"] / 1000, UTC),
                        stream=item.get("logStreamName", ""),
                        message=item.get("message", "").rstrip("\n"),
                    )
                )
            if len(events) > max_events:
                return events, False
            token = page.get("nextToken")
            if not token:
                return events, True
            request["nextToken"] = token
