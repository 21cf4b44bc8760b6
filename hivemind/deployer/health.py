"""What the load balancer says about a target group's instances: their health, waiting
until every one of a release is healthy, and until a deregistered one has drained."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hivemind.errors import HiveMindError

# The target group's check: 2 healthy answers 15 s apart, plus registration.
HEALTHY_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 2.0
HEALTHY, DRAINING = "healthy", "draining"
# AWS's default, for a target group that does not say (the stack's say 30 s).
DEFAULT_DEREGISTRATION_DELAY = 300.0


@dataclass(frozen=True)
class TargetHealth:
    instance_id: str
    state: str
    reason: str = ""
    description: str = ""

    def explain(self) -> str:
        why = " ".join(p for p in (self.reason, self.description) if p)
        return f"{self.instance_id} is {self.state}" + (f" ({why})" if why else "")


def unregistered(instance_id: str) -> TargetHealth:
    """An instance the target group does not report (never registered, or drained)."""
    return TargetHealth(instance_id, "unregistered", "Target.NotRegistered")


class TargetsUnhealthy(HiveMindError):
    """The load balancer did not report every target healthy in time."""

    def __init__(self, unhealthy: list[TargetHealth], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unhealthy = unhealthy


class TargetsStillDraining(HiveMindError):
    """A deregistered target was still draining when its wait ran out."""

    def __init__(self, draining: list[TargetHealth], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.draining = draining


def target_health(elbv2: Any, target_group_arn: str) -> dict[str, TargetHealth]:
    response = elbv2.describe_target_health(TargetGroupArn=target_group_arn)
    found = {}
    for item in response.get("TargetHealthDescriptions", []):
        target = item["Target"]["Id"]
        health = item.get("TargetHealth", {})
        found[target] = TargetHealth(
            target,
            health.get("State", "unknown"),
            health.get("Reason", ""),
            health.get("Description", ""),
        )
    return found


def wait_until_healthy(
    elbv2: Any,
    target_group_arn: str,
    instance_ids: list[str],
    *,
    timeout: float = HEALTHY_TIMEOUT_SECONDS,
    poll: float = POLL_SECONDS,
    progress: Callable[[str], None] = lambda _line: None,
    wait: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Return the seconds waited once every instance is `healthy` in the target group;
    raise TargetsUnhealthy with each other target's state and reason at the timeout."""
    started = clock()
    last = ""
    while True:
        health = target_health(elbv2, target_group_arn)
        states = [health.get(i, unregistered(i)) for i in instance_ids]
        waiting = [s for s in states if s.state != HEALTHY]
        if not waiting:
            return clock() - started
        summary = ", ".join(s.explain() for s in waiting)
        if summary != last:
            progress(f"waiting for the load balancer: {summary}")
            last = summary
        if clock() - started > timeout:
            raise TargetsUnhealthy(
                waiting,
                f"the load balancer did not report every instance healthy within {timeout:.0f} s",
                where="deploy, load balancer health checks",
                cause="; ".join(s.explain() for s in waiting),
            )
        wait(poll)


def deregistration_delay(elbv2: Any, target_group_arn: str) -> float:
    """How long the target group drains a deregistered target, in seconds (its
    `deregistration_delay.timeout_seconds` attribute)."""
    response = elbv2.describe_target_group_attributes(TargetGroupArn=target_group_arn)
    for attribute in response.get("Attributes", []):
        if attribute.get("Key") == "deregistration_delay.timeout_seconds":
            return float(attribute["Value"])
    return DEFAULT_DEREGISTRATION_DELAY


def wait_until_drained(
    elbv2: Any,
    target_group_arn: str,
    instance_ids: list[str],
    *,
    timeout: float,
    poll: float = POLL_SECONDS,
    progress: Callable[[str], None] = lambda _line: None,
    wait: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Return the seconds waited once the target group no longer reports any of the
    (deregistered) instances `draining`; raise TargetsStillDraining at the timeout."""
    started = clock()
    reported = False
    while True:
        health = target_health(elbv2, target_group_arn)
        draining = [health[i] for i in instance_ids if i in health and health[i].state == DRAINING]
        if not draining:
            return clock() - started
        if not reported:
            progress(f"waiting for the load balancer to drain {', '.join(instance_ids)}")
            reported = True
        if clock() - started > timeout:
            raise TargetsStillDraining(
                draining,
                f"the load balancer still drains {', '.join(d.instance_id for d in draining)} "
                f"after {timeout:.0f} s",
                where="load balancer, deregistration",
                cause="; ".join(d.explain() for d in draining),
            )
        wait(poll)
