"""Live progress of a CloudFormation operation, built from the stack's events.

`StackProgress` is fed the stack's events (newest first, as DescribeStackEvents
returns them) and keeps, per resource, its latest status. A terminal gets one line
rewritten in place (resources done/total, what is in progress, elapsed time);
anything else gets one plain line per resource that finishes or fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_SHOWN_IN_PROGRESS = 3


@dataclass
class ResourceState:
    logical_id: str
    resource_type: str
    status: str
    reason: str = ""


@dataclass
class StackProgress:
    """What CloudFormation has done so far for one operation on one stack."""

    stack_name: str
    total: int
    started: float = field(default_factory=time.monotonic)
    resources: dict[str, ResourceState] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # event ids already taken

    def feed(self, events: Iterable[Mapping[str, Any]]) -> list[ResourceState]:
        """Take events (any order, repeats allowed); returns resources that changed."""
        changed: list[ResourceState] = []
        fresh = [e for e in events if str(e.get("EventId")) not in self.seen]
        fresh.sort(key=lambda e: str(e.get("Timestamp", "")))
        for event in fresh:
            self.seen.add(str(event.get("EventId")))
            logical_id = str(event.get("LogicalResourceId", ""))
            if logical_id == self.stack_name:
                continue  # the stack's own events: the operation's start and end
            state = ResourceState(
                logical_id,
                str(event.get("ResourceType", "")),
                str(event.get("ResourceStatus", "")),
                str(event.get("ResourceStatusReason") or ""),
            )
            self.resources[logical_id] = state
            changed.append(state)
        return changed

    def count(self, suffix: str) -> int:
        return sum(1 for r in self.resources.values() if r.status.endswith(suffix))

    @property
    def done(self) -> int:
        return self.count("_COMPLETE")

    @property
    def in_progress(self) -> list[ResourceState]:
        return [r for r in self.resources.values() if r.status.endswith("_IN_PROGRESS")]

    @property
    def failed(self) -> list[ResourceState]:
        """Failures with CloudFormation's reason; a cancellation caused by another
        resource's failure is not a cause and is left out."""
        return [
            r
            for r in self.resources.values()
            if r.status.endswith("_FAILED") and "cancelled" not in r.reason.lower()
        ]

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}m{seconds % 60:02d}s"

    def summary_line(self) -> str:
        busy = self.in_progress
        names = ", ".join(r.logical_id for r in busy[:_SHOWN_IN_PROGRESS])
        more = f" (+{len(busy) - _SHOWN_IN_PROGRESS})" if len(busy) > _SHOWN_IN_PROGRESS else ""
        working = f"  in progress: {names}{more}" if busy else ""
        return f"[{self.done}/{self.total}] {self.elapsed()}{working}"


class ProgressDisplay:
    """Shows a StackProgress: one rewritten line on a terminal, plain lines elsewhere."""

    def __init__(self, write: Callable[[str], None], *, terminal: bool, width: int = 100) -> None:
        self.write = write
        self.terminal = terminal
        self.width = width

    def update(self, progress: StackProgress, changed: list[ResourceState]) -> None:
        if self.terminal:
            for state in changed:
                if state.status.endswith("_FAILED") and state in progress.failed:
                    self.write(f"\r\033[K  failed: {state.logical_id}: {state.reason}\n")
            self.write("\r\033[K" + progress.summary_line()[: self.width])
            return
        # Count up line by line, as the resources finished, not all at the batch's total.
        done = progress.done - sum(1 for s in changed if s.status.endswith("_COMPLETE"))
        for state in changed:
            if state.status.endswith("_COMPLETE"):
                done += 1
            if state.status.endswith(("_COMPLETE", "_FAILED")):
                reason = f": {state.reason}" if state.status.endswith("_FAILED") else ""
                self.write(
                    f"{done}/{progress.total} {progress.elapsed()} {state.status} "
                    f"{state.logical_id} ({state.resource_type}){reason}\n"
                )

    def finish(self) -> None:
        if self.terminal:
            self.write("\n")
