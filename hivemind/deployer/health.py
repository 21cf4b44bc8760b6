"""Waiting for the load balancer to report every instance of a release healthy."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hivemind.errors import HiveMindError

# The target group's check: 2 healthy answers 15 s apart, plus registration.
HEALTHY_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class TargetHealth:
    instance_id: str
    state: str
    reason: str = ""
    description: str = ""

    def explain(self) -> str:
        why = " ".join(p for p in (self.reason, self.description) if p)
        return f"{self.instance_id} is {self.state}" + (f" ({why})" if why else "")


class TargetsUnhealthy(HiveMindError):
    """The load balancer did not report every target healthy in time."""

    def __init__(self, unhealthy: list[TargetHealth], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unhealthy = unhealthy


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
) -> float:
    """Return the seconds waited once every instance is `healthy` in the target group;
    raise TargetsUnhealthy with each other target's state and reason at the timeout."""
    started = time.monotonic()
    last = ""
    while True:
        health = target_health(elbv2, target_group_arn)
        states = [
            health.get(i, TargetHealth(i, "unregistered", "Target.NotRegistered"))
            for i in instance_ids
        ]
        waiting = [s for s in states if s.state != "healthy"]
        if not waiting:
            return time.monotonic() - started
        summary = ", ".join(s.explain() for s in waiting)
        if summary != last:
            progress(f"waiting for the load balancer: {summary}")
            last = summary
        if time.monotonic() - started > timeout:
            raise TargetsUnhealthy(
                waiting,
                f"the load balancer did not report every instance healthy within {timeout:.0f} s",
                where="deploy, load balancer health checks",
                cause="; ".join(s.explain() for s in waiting),
            )
        wait(poll)
