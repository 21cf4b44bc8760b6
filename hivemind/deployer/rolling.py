"""A rolling update: the instances behind the load balancer updated one at a time, so
the others keep serving.

For each instance, in turn:

1. unless downtime is allowed, check that every other target of the group (and every
   other instance being updated) is healthy, else refuse to take this one out;
2. deregister it (unless it is out already) and wait until the load balancer has
   drained it (at most the group's `deregistration_delay.timeout_seconds` plus
   DRAIN_MARGIN_SECONDS);
3. update it: the action given (a deploy, or a switch to a kept release, on that one
   instance);
4. register it again and wait until the load balancer reports it healthy.

Instances the load balancer does not count as healthy at the start (left out by an
earlier update that failed, or failing their checks) go first: taking them out costs no
capacity, and once they are back the others can go. With N >= 2 targets (the group's
and the instances being updated) there are never fewer than N-1 healthy; a single one
cannot be updated this way without downtime, so that takes `allow_downtime=True` (which
also lifts the check of step 1).

A failure stops the update and leaves the failed instance out of the load balancer
(RollingFailed says which instances were already updated, so the caller can switch them
back). Each instance's release records the seconds of the rolling stages beside its own
steps: "drain" (deregistration until drained) and "register" (registration until the
load balancer reports it healthy); `stage_seconds` splits a release by stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hivemind.deployer.access import Instance
from hivemind.deployer.health import (
    DRAINING,
    HEALTHY,
    HEALTHY_TIMEOUT_SECONDS,
    POLL_SECONDS,
    TargetHealth,
    deregistration_delay,
    target_health,
    unregistered,
    wait_until_drained,
    wait_until_healthy,
)
from hivemind.errors import HiveMindError, RefusedError
from hivemind.records import InstanceRelease

DRAIN_MARGIN_SECONDS = 30.0
# The rolling stages' names in an instance's seconds, beside the action's own steps.
DRAIN, REGISTER = "drain", "register"


class RollingRefused(RefusedError):
    """The rolling update declined to take an instance out of the load balancer."""

    def __init__(
        self,
        what: str,
        *,
        instance: Instance,
        updated: list[InstanceRelease],
        unhealthy: list[TargetHealth],
        **kwargs: Any,
    ) -> None:
        super().__init__(what, **kwargs)
        self.instance = instance  # the one it would have taken out
        self.updated = updated  # instances already updated before it refused
        self.unhealthy = unhealthy  # the targets whose state made it refuse


class RollingFailed(HiveMindError):
    """An instance's update (or its health once back) failed; the update stopped there."""

    def __init__(
        self,
        what: str,
        *,
        failed: Instance,
        stage: str,
        error: BaseException,
        updated: list[InstanceRelease],
        **kwargs: Any,
    ) -> None:
        super().__init__(what, **kwargs)
        self.failed = failed  # left deregistered from the target group
        self.stage = stage  # "drain", "deploy" or "register"
        self.error = error  # the original error (DeployFailed, TargetsUnhealthy, ...)
        self.updated = updated  # back in service on the new release, in update order


def stage_seconds(release: InstanceRelease) -> dict[str, float]:
    """A rolled instance's seconds by stage: drain, deploy (the action's own steps) and
    register."""
    seconds = release.seconds
    deploy = sum(v for k, v in seconds.items() if k not in (DRAIN, REGISTER))
    return {
        DRAIN: seconds.get(DRAIN, 0.0),
        "deploy": round(deploy, 3),
        REGISTER: seconds.get(REGISTER, 0.0),
    }


class RollingUpdate:
    """Updates a target group's instances one at a time; collaborators are given."""

    def __init__(
        self,
        elbv2: Any,
        target_group_arn: str,
        port: int,
        *,
        log: Callable[[str], None],
        healthy_timeout: float = HEALTHY_TIMEOUT_SECONDS,
        drain_margin: float = DRAIN_MARGIN_SECONDS,
        poll: float = POLL_SECONDS,
        allow_downtime: bool = False,
        wait: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.elbv2 = elbv2
        self.target_group_arn = target_group_arn
        self.port = port
        self.log = log
        self.healthy_timeout = healthy_timeout
        self.drain_margin = drain_margin
        self.poll = poll
        self.allow_downtime = allow_downtime
        self.wait = wait
        self.clock = clock

    def run(
        self, instances: list[Instance], action: Callable[[Instance], InstanceRelease]
    ) -> list[InstanceRelease]:
        """Update every instance with `action`, one at a time (those out of service
        first); the releases in update order, each with its drain and register seconds.
        RollingRefused before taking out an instance that would leave fewer than N-1
        healthy targets, or the only one (without allow_downtime); RollingFailed when an
        instance's update or its health once back fails (it stays deregistered)."""
        if not instances:
            return []
        health = target_health(self.elbv2, self.target_group_arn)
        self._refuse_a_single_instance(instances, health)
        timeout = deregistration_delay(self.elbv2, self.target_group_arn) + self.drain_margin

        def serving(instance: Instance) -> bool:
            known = health.get(instance.instance_id)
            return known is not None and known.state == HEALTHY

        ordered = sorted(instances, key=serving)  # stable: the given order otherwise
        updated: list[InstanceRelease] = []
        for number, instance in enumerate(ordered, start=1):
            self._check_others(instance, instances, updated)
            self.log(
                f"rolling: {instance.instance_id} ({number} of {len(ordered)}) leaves the "
                "load balancer"
            )
            updated.append(self._update(instance, action, timeout, updated))
        return updated

    def _refuse_a_single_instance(
        self, instances: list[Instance], health: dict[str, TargetHealth]
    ) -> None:
        """With nothing else in the group to serve, updating takes the app offline."""
        targets = {i for i, h in health.items() if h.state != DRAINING}
        targets.update(i.instance_id for i in instances)
        if len(targets) > 1 or self.allow_downtime:
            return
        only = instances[0].instance_id
        raise RollingRefused(
            f"a rolling update of a single instance ({only}) takes the app offline",
            instance=instances[0],
            updated=[],
            unhealthy=[],
            where="rolling update",
            cause="the load balancer has no other instance to send requests to while "
            f"{only} is updated",
            next_step="update blue-green instead (new instances take over once healthy), "
            "or accept the downtime",
        )

    def _check_others(
        self, instance: Instance, instances: list[Instance], updated: list[InstanceRelease]
    ) -> None:
        """Refuse to take `instance` out while it serves and another target (of the group,
        or being updated) is not healthy."""
        if self.allow_downtime:
            return
        health = target_health(self.elbv2, self.target_group_arn)
        mine = health.get(instance.instance_id)
        if mine is None or mine.state != HEALTHY:
            return  # out of service already: taking it out costs no capacity
        others = [i for i, h in health.items() if h.state != DRAINING]
        others += [i.instance_id for i in instances]
        unhealthy = [
            health.get(i, unregistered(i))
            for i in dict.fromkeys(others)
            if i != instance.instance_id
        ]
        unhealthy = [h for h in unhealthy if h.state != HEALTHY]
        if unhealthy:
            raise RollingRefused(
                f"taking {instance.instance_id} out of the load balancer would leave "
                "fewer healthy instances than all but one",
                instance=instance,
                updated=list(updated),
                unhealthy=unhealthy,
                where=f"rolling update, before {instance.instance_id}",
                cause="; ".join(h.explain() for h in unhealthy),
                details=[f"already updated: {r.instance_id} ({r.release_id})" for r in updated],
                next_step="bring the other instances back to healthy first (`hivemind "
                "status` shows why they are not), then update again",
            )

    def _update(
        self,
        instance: Instance,
        action: Callable[[Instance], InstanceRelease],
        drain_timeout: float,
        updated: list[InstanceRelease],
    ) -> InstanceRelease:
        stage = DRAIN
        try:
            started = self.clock()
            self._take_out(instance)
            wait_until_drained(
                self.elbv2,
                self.target_group_arn,
                [instance.instance_id],
                timeout=drain_timeout,
                poll=self.poll,
                progress=self.log,
                wait=self.wait,
                clock=self.clock,
            )
            drained = round(self.clock() - started, 3)
            self.log(f"rolling: {instance.instance_id} drained after {drained:.1f}s")

            stage = "deploy"
            started = self.clock()
            result = action(instance)
            acted = self.clock() - started
            self.log(f"rolling: {instance.instance_id} updated after {acted:.1f}s")

            stage = REGISTER
            started = self.clock()
            self.elbv2.register_targets(
                TargetGroupArn=self.target_group_arn, Targets=self._target(instance)
            )
            wait_until_healthy(
                self.elbv2,
                self.target_group_arn,
                [instance.instance_id],
                timeout=self.healthy_timeout,
                poll=self.poll,
                progress=self.log,
                wait=self.wait,
                clock=self.clock,
            )
            registered = round(self.clock() - started, 3)
        except Exception as error:
            raise self._failed(instance, stage, error, updated) from error
        self.log(
            f"rolling: {instance.instance_id} healthy in the load balancer after "
            f"{registered:.1f}s (drain {drained:.1f}s, deploy {acted:.1f}s)"
        )
        seconds = {DRAIN: drained, **result.seconds, REGISTER: registered}
        return result.model_copy(update={"seconds": seconds})

    def _take_out(self, instance: Instance) -> None:
        """Deregister `instance` unless it is out already (moto refuses to deregister a
        target that is not registered)."""
        known = target_health(self.elbv2, self.target_group_arn).get(instance.instance_id)
        if known is not None and known.state != DRAINING:
            self.elbv2.deregister_targets(
                TargetGroupArn=self.target_group_arn, Targets=self._target(instance)
            )

    def _target(self, instance: Instance) -> list[dict[str, Any]]:
        return [{"Id": instance.instance_id, "Port": self.port}]

    def _failed(
        self,
        instance: Instance,
        stage: str,
        error: Exception,
        updated: list[InstanceRelease],
    ) -> RollingFailed:
        details: list[str] = []
        if stage == REGISTER:
            # Back in the group but not healthy: out again, as after any other failure.
            try:
                self._take_out(instance)
            except Exception as again:
                details.append(f"could not deregister {instance.instance_id} again: {again}")
        if isinstance(error, HiveMindError):
            cause = error.cause or error.what
            details = [*error.details, *details]
        else:
            cause = f"{type(error).__name__}: {error}"
        done = ", ".join(r.instance_id for r in updated) or "none"
        self.log(f"rolling: {instance.instance_id} failed at {stage}: {cause}")
        return RollingFailed(
            f"the rolling update stopped at {instance.instance_id} ({stage}): "
            f"{error.what if isinstance(error, HiveMindError) else error}",
            failed=instance,
            stage=stage,
            error=error,
            updated=list(updated),
            where=f"rolling update, {stage} on {instance.instance_id}",
            cause=cause,
            details=details,
            next_step=f"{instance.instance_id} is out of the load balancer; already updated: "
            f"{done}. Fix the cause and update again, or switch the updated instances back "
            "to the previous release",
        )
