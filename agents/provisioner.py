"""Provisioner: what CloudFormation did with the stack, read from its events.

Called after the provision stage (and by `hivemind status` for a stack that is still
moving): a headline, the slowest resources with their durations, and, when the
operation failed, the root failure: the first resource that failed for a reason of its
own, not the "Resource creation cancelled" of the resources CloudFormation stopped
because of it, nor the stack's "The following resource(s) failed to create" summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Agent, Rejected

Outcome = Literal["succeeded", "failed", "in_progress"]
Action = Literal["create", "update", "delete", "import"]
_ACTIONS: dict[str, Action] = {
    "CREATE": "create",
    "UPDATE": "update",
    "DELETE": "delete",
    "IMPORT": "import",
}
SLOWEST_SHOWN = 5
# A root failure may be any real failure this close to the first one (they fail together).
_SIMULTANEOUS_SECONDS = 5.0
_OPERATION_STARTS = (
    "CREATE_IN_PROGRESS",
    "UPDATE_IN_PROGRESS",
    "DELETE_IN_PROGRESS",
    "IMPORT_IN_PROGRESS",
)
# Reasons that are the consequence of another resource's failure, not a cause.
_CONSEQUENCES = ("cancelled", "canceled", "the following resource(s) failed")
_VERBS = {
    "CREATE": ("Created", "Creating"),
    "UPDATE": ("Updated", "Updating"),
    "DELETE": ("Deleted", "Deleting"),
    "IMPORT": ("Imported", "Importing"),
}
# (words in CloudFormation's reason, what it means) — first match wins.
_MEANINGS = (
    (("not authorized", "accessdenied", "access denied", "is not authorized"),
     "the credentials HiveMind runs with lack a permission for this call"),
    (("limitexceeded", "limit exceeded", "quota", "maximum number"),
     "an AWS service quota of the account or region is used up"),
    (("insufficientinstancecapacity", "insufficient capacity"),
     "AWS has no capacity for this instance type in that availability zone right now"),
    (("already exists",), "a resource with the same name already exists outside this stack"),
    (("throttl", "rate exceeded"), "AWS throttled the calls; a retry usually gets through"),
    (("did not stabilize", "timed out", "timeout", "exceeded the timeout"),
     "the resource did not become ready in time"),
    (("not supported", "unsupported"), "the region or account does not support this setting"),
    (("invalid", "validation", "malformed", "must be", "cannot be"),
     "a property value was refused by the service"),
)  # fmt: skip


class StackEvent(BaseModel):
    """One CloudFormation stack event."""

    model_config = ConfigDict(frozen=True)

    logical_id: str
    resource_type: str
    status: str
    reason: str = ""
    timestamp: datetime

    @classmethod
    def from_api(cls, event: Mapping[str, Any]) -> StackEvent:
        """From a DescribeStackEvents item."""
        return cls(
            logical_id=str(event.get("LogicalResourceId", "")),
            resource_type=str(event.get("ResourceType", "")),
            status=str(event.get("ResourceStatus", "")),
            reason=str(event.get("ResourceStatusReason") or ""),
            timestamp=event["Timestamp"],
        )


class ProvisionerInput(BaseModel):
    """The stack's name and its events (any order)."""

    model_config = ConfigDict(frozen=True)

    stack_name: str
    events: tuple[StackEvent, ...]

    @classmethod
    def from_api(cls, stack_name: str, events: Iterable[Mapping[str, Any]]) -> ProvisionerInput:
        return cls(stack_name=stack_name, events=tuple(StackEvent.from_api(e) for e in events))


class ResourceTiming(BaseModel):
    """How long CloudFormation took on one resource."""

    logical_id: str
    resource_type: str
    action: Action
    seconds: float
    status: str = Field(description="how it ended, e.g. CREATE_COMPLETE")


class RootFailure(BaseModel):
    """The failure that caused the others."""

    logical_id: str
    resource_type: str
    status: str
    reason: str = Field(description="CloudFormation's status reason, copied exactly")
    explanation: str = Field(description="what the reason means, in plain words")


class ProvisioningReport(BaseModel):
    """Provisioner's answer."""

    outcome: Outcome
    headline: str = Field(description="one sentence: what happened to the stack, and how long")
    seconds: float = Field(description="the operation's duration so far")
    slowest: list[ResourceTiming] = Field(description="the slowest resources, slowest first")
    root_failure: RootFailure | None = Field(
        None, description="when it failed: the first resource failure with a reason of its own"
    )


@dataclass(frozen=True)
class Timeline:
    """The events of the stack's latest operation, in order, and what they add up to."""

    stack_name: str
    operation: str  # CREATE, UPDATE, DELETE, IMPORT (or "" if the start is not in view)
    events: tuple[StackEvent, ...]

    @classmethod
    def of(cls, inputs: ProvisionerInput) -> Timeline:
        ordered = sorted(inputs.events, key=lambda e: (e.timestamp, _rank(e.status)))
        starts = [
            i
            for i, e in enumerate(ordered)
            if _is_stack(e, inputs.stack_name) and e.status in _OPERATION_STARTS
        ]
        start = starts[-1] if starts else 0
        operation = ordered[start].status.split("_")[0] if starts else ""
        return cls(inputs.stack_name, operation, tuple(ordered[start:]))

    @property
    def resource_events(self) -> list[StackEvent]:
        return [e for e in self.events if not _is_stack(e, self.stack_name)]

    @property
    def stack_events(self) -> list[StackEvent]:
        return [e for e in self.events if _is_stack(e, self.stack_name)]

    @property
    def seconds(self) -> float:
        if not self.events:
            return 0.0
        return (self.events[-1].timestamp - self.events[0].timestamp).total_seconds()

    def outcome(self) -> Outcome:
        stack = self.stack_events
        if stack:
            last = stack[-1].status
            if "ROLLBACK" in last or last.endswith("_FAILED"):
                return "failed"
            if last.endswith("_COMPLETE") or last.endswith("CLEANUP_IN_PROGRESS"):
                return "succeeded"
            return "in_progress"
        if self.real_failures():
            return "failed"
        latest: dict[str, str] = {e.logical_id: e.status for e in self.resource_events}
        return (
            "in_progress"
            if any(s.endswith("_IN_PROGRESS") for s in latest.values())
            else ("succeeded")
        )

    def real_failures(self) -> list[StackEvent]:
        return [
            e
            for e in self.resource_events
            if e.status.endswith("_FAILED") and not is_consequence(e.reason)
        ]

    def root_failure(self) -> StackEvent | None:
        failures = self.real_failures()
        if failures:
            return failures[0]
        for event in self.stack_events:  # no resource says why: the stack's own reason
            if (event.status.endswith("_FAILED") or "ROLLBACK" in event.status) and event.reason:
                return event
        return None

    def timings(self) -> list[ResourceTiming]:
        """Each resource's span from its first IN_PROGRESS to the COMPLETE or FAILED that
        ends it, per action; slowest first."""
        started: dict[tuple[str, str], StackEvent] = {}
        spans: list[ResourceTiming] = []
        for event in self.resource_events:
            verb, _, state = event.status.partition("_")
            action = _ACTIONS.get(verb)
            if action is None:
                continue
            key = (event.logical_id, action)
            if state == "IN_PROGRESS":
                started.setdefault(key, event)
            elif state in ("COMPLETE", "FAILED") and key in started:
                begin = started.pop(key)
                spans.append(
                    ResourceTiming(
                        logical_id=event.logical_id,
                        resource_type=event.resource_type,
                        action=action,
                        seconds=round((event.timestamp - begin.timestamp).total_seconds(), 1),
                        status=event.status,
                    )
                )
        return sorted(spans, key=lambda s: (-s.seconds, s.logical_id))


def _is_stack(event: StackEvent, stack_name: str) -> bool:
    return event.logical_id == stack_name


def _rank(status: str) -> int:
    # Same-second events: a start comes before what ends it.
    return 0 if status.endswith("_IN_PROGRESS") else 1


def is_consequence(reason: str) -> bool:
    """Whether a failure reason only reports another resource's failure."""
    lowered = reason.lower()
    return any(phrase in lowered for phrase in _CONSEQUENCES)


def meaning(reason: str) -> str:
    """What CloudFormation's reason means, in plain words."""
    lowered = reason.lower()
    for words, said in _MEANINGS:
        if any(word in lowered for word in words):
            return f"{said[0].upper()}{said[1:]}."
    return "CloudFormation's reason above is the service's own words; it names the cause."


def duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


class Provisioner(Agent[ProvisionerInput, ProvisioningReport]):
    name: ClassVar[str] = "provisioner"
    output = ProvisioningReport
    prompt: ClassVar[str] = """
You are Provisioner, HiveMind's CloudFormation engineer. You are given the events of one
stack operation (create, update or delete), oldest first: each resource's logical id,
type, status, CloudFormation's status reason and the time. Report:

- outcome: succeeded, failed (any rollback or FAILED end) or in_progress;
- headline: one sentence with the stack, what happened and how long it took;
- slowest: the slowest resources with their durations (from the first IN_PROGRESS to
  the COMPLETE or FAILED that ends it), slowest first;
- root_failure, only when it failed: the first resource that failed for a reason of its
  own. "Resource creation cancelled" and "Resource update cancelled" are consequences,
  not causes; so is the stack's "The following resource(s) failed to create". Copy the
  reason exactly and explain it in plain words (a missing permission, a quota, no
  capacity, a name already taken, an invalid value).

Use the `resource_events` tool to see one resource's events. Durations must match the
events; the reason must be the event's own text.
"""

    def describe(self, inputs: ProvisionerInput) -> str:
        timeline = Timeline.of(inputs)
        if not timeline.events:
            return f"Stack {inputs.stack_name}: no events."
        start = timeline.events[0].timestamp
        lines = [f"Stack {inputs.stack_name}, operation {timeline.operation or 'unknown'}:"]
        for event in timeline.events:
            offset = (event.timestamp - start).total_seconds()
            reason = f" reason: {event.reason}" if event.reason else ""
            lines.append(
                f"+{offset:.0f}s {event.logical_id} ({event.resource_type}) {event.status}{reason}"
            )
        return "\n".join(lines)

    def tools(self, inputs: ProvisionerInput) -> list[Callable[..., str]]:
        def resource_events(logical_id: str) -> str:
            """One resource's events, oldest first, with CloudFormation's reasons."""
            events = [e for e in Timeline.of(inputs).events if e.logical_id == logical_id]
            if not events:
                return f"no events for {logical_id}"
            return "\n".join(
                f"{e.timestamp.isoformat()} {e.status} {e.reason}".rstrip() for e in events
            )

        return [resource_events]

    def check(self, inputs: ProvisionerInput, proposal: ProvisioningReport) -> ProvisioningReport:
        """The outcome must be the events' outcome; each timing must be a span the events
        show; the root failure must be a real failure (not a cancellation) at the start of
        the failures, with its reason copied exactly. A failed report without one gets
        HiveMind's."""
        timeline = Timeline.of(inputs)
        outcome = timeline.outcome()
        if proposal.outcome != outcome:
            raise Rejected(f"the stack's events say {outcome}, not {proposal.outcome}")
        spans = {(t.logical_id, t.action): t for t in timeline.timings()}
        for timing in proposal.slowest:
            span = spans.get((timing.logical_id, timing.action))
            if span is None:
                raise Rejected(f"the events show no {timing.action} of {timing.logical_id}")
            if abs(span.seconds - timing.seconds) > max(1.0, 0.05 * span.seconds):
                raise Rejected(
                    f"{timing.logical_id} took {span.seconds:.0f} s, not {timing.seconds:.0f} s"
                )
        root = proposal.root_failure
        if outcome != "failed":
            if root is not None:
                raise Rejected(f"the operation {outcome}: there is no root failure")
            return proposal
        if root is None:
            fallback_root = self.fallback(inputs).root_failure
            return proposal.model_copy(update={"root_failure": fallback_root})
        if is_consequence(root.reason):
            raise Rejected(f"{root.logical_id}'s {root.reason!r} is a consequence, not a cause")
        if root.logical_id == inputs.stack_name and timeline.real_failures():
            raise Rejected("the stack's own status is not the cause: a resource failed first")
        matching = [
            e
            for e in timeline.events
            if e.logical_id == root.logical_id
            and e.status == root.status
            and e.reason == root.reason
        ]
        if not matching:
            raise Rejected(f"no event of {root.logical_id} says {root.reason!r}")
        first = timeline.root_failure()
        if first is not None and first.logical_id != root.logical_id:
            late = (matching[0].timestamp - first.timestamp).total_seconds()
            if late > _SIMULTANEOUS_SECONDS:
                raise Rejected(
                    f"{root.logical_id} failed {late:.0f} s after {first.logical_id}: "
                    "it is not the root failure"
                )
        return proposal

    def fallback(self, inputs: ProvisionerInput) -> ProvisioningReport:
        timeline = Timeline.of(inputs)
        outcome = timeline.outcome()
        timings = timeline.timings()
        slowest = timings[:SLOWEST_SHOWN]
        root = timeline.root_failure() if outcome == "failed" else None
        root_failure = None
        if root is not None:
            root_failure = RootFailure(
                logical_id=root.logical_id,
                resource_type=root.resource_type,
                status=root.status,
                reason=root.reason,
                explanation=meaning(root.reason),
            )
        return ProvisioningReport(
            outcome=outcome,
            headline=_headline(timeline, outcome, slowest, root),
            seconds=round(timeline.seconds, 1),
            slowest=slowest,
            root_failure=root_failure,
        )


def _headline(
    timeline: Timeline, outcome: Outcome, slowest: list[ResourceTiming], root: StackEvent | None
) -> str:
    done, doing = _VERBS.get(timeline.operation, ("Changed", "Changing"))
    took = duration(timeline.seconds)
    stack = timeline.stack_name
    if outcome == "failed":
        cause = f": {root.logical_id} ({_short(root.resource_type)}): {root.reason}" if root else ""
        return f"{doing} {stack} failed after {took}{cause}"
    if outcome == "in_progress":
        finished = {
            e.logical_id for e in timeline.resource_events if e.status.endswith("_COMPLETE")
        }
        touched = {e.logical_id for e in timeline.resource_events}
        return f"{doing} {stack}: {len(finished)} of {len(touched)} resources done after {took}"
    count = len({e.logical_id for e in timeline.resource_events})
    slow = (
        f"; slowest: {slowest[0].logical_id} ({_short(slowest[0].resource_type)}, "
        f"{duration(slowest[0].seconds)})"
        if slowest
        else ""
    )
    return f"{done} {stack} in {took}: {count} resources{slow}"


def _short(resource_type: str) -> str:
    return resource_type.removeprefix("AWS::").replace("::", " ")
