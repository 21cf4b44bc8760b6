"""A rolling update, one instance at a time behind the load balancer, against a fake
ELBv2 client: a target group whose targets drain for its deregistration delay after
deregistration, pass their checks some seconds after registration (or never), on a
clock that moves only when the update waits or an instance is updated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from hivemind.deployer.access import Instance
from hivemind.deployer.health import TargetsStillDraining, TargetsUnhealthy
from hivemind.deployer.release import DeployFailed
from hivemind.deployer.rolling import RollingFailed, RollingRefused, RollingUpdate, stage_seconds
from hivemind.records import InstanceRelease

GROUP = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/BlueTargets/abc"
PORT = 8000
DEPLOY_SECONDS = 40.0  # what updating one instance takes on the fake clock
CHECKS_PASS_AFTER = 20.0  # seconds from registration until the target is healthy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Target:
    registered_at: float | None = -1e9  # None: not registered
    deregistered_at: float | None = None
    healthy: bool = True  # whether its health checks pass


@dataclass
class FakeElbv2:
    """The four ELBv2 calls a rolling update makes, on `clock`'s time."""

    clock: Clock
    targets: dict[str, Target]
    delay: float = 30.0  # deregistration_delay.timeout_seconds
    drains_forever: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)  # (call, instance id)
    healthy_others_when_taken_out: list[int] = field(default_factory=list)

    def state(self, target: Target) -> str | None:
        now = self.clock.now
        if target.registered_at is None:
            assert target.deregistered_at is not None
            draining = self.drains_forever or now < target.deregistered_at + self.delay
            return "draining" if draining else None
        if now < target.registered_at + CHECKS_PASS_AFTER:
            return "initial"
        return "healthy" if target.healthy else "unhealthy"

    def describe_target_health(self, *, TargetGroupArn: str) -> dict[str, Any]:
        assert TargetGroupArn == GROUP
        found = []
        for target_id, target in self.targets.items():
            state = self.state(target)
            if state is None:
                continue
            health: dict[str, str] = {"State": state}
            if state == "unhealthy":
                health |= {"Reason": "Target.FailedHealthChecks", "Description": "failed"}
            found.append({"Target": {"Id": target_id, "Port": PORT}, "TargetHealth": health})
        return {"TargetHealthDescriptions": found}

    def describe_target_group_attributes(self, *, TargetGroupArn: str) -> dict[str, Any]:
        assert TargetGroupArn == GROUP
        return {
            "Attributes": [
                {"Key": "stickiness.enabled", "Value": "false"},
                {"Key": "deregistration_delay.timeout_seconds", "Value": str(int(self.delay))},
            ]
        }

    def deregister_targets(self, *, TargetGroupArn: str, Targets: list[dict[str, Any]]) -> None:
        [target] = Targets
        assert (TargetGroupArn, target["Port"]) == (GROUP, PORT)
        known = self.targets[target["Id"]]
        if known.registered_at is None:  # as moto does
            raise RuntimeError("InvalidTarget: the target is not registered")
        self.calls.append(("deregister", target["Id"]))
        self.healthy_others_when_taken_out.append(
            sum(self.state(t) == "healthy" for i, t in self.targets.items() if i != target["Id"])
        )
        known.registered_at, known.deregistered_at = None, self.clock.now

    def register_targets(self, *, TargetGroupArn: str, Targets: list[dict[str, Any]]) -> None:
        [target] = Targets
        assert (TargetGroupArn, target["Port"]) == (GROUP, PORT)
        self.calls.append(("register", target["Id"]))
        self.targets[target["Id"]].registered_at = self.clock.now


def instance(number: int) -> Instance:
    return Instance(f"i-0{number}", f"10.0.1.{number}", f"10.0.1.{number}")


I1, I2, I3 = instance(1), instance(2), instance(3)


class Updates:
    """The action: an instance's deploy, which takes DEPLOY_SECONDS and can fail."""

    def __init__(self, balancer: FakeElbv2, *, fails_on: str = "") -> None:
        self.balancer = balancer
        self.fails_on = fails_on

    def __call__(self, instance: Instance) -> InstanceRelease:
        self.balancer.calls.append(("deploy", instance.instance_id))
        self.balancer.clock.wait(DEPLOY_SECONDS)
        if instance.instance_id == self.fails_on:
            raise DeployFailed(
                f"build failed on {instance.instance_id} ({instance.address})",
                where=f"deploy, build on {instance.instance_id}",
                cause="npm error code ERESOLVE",
                details=["exit code 1", "command: npm ci", "stderr: npm error code ERESOLVE"],
            )
        return InstanceRelease(
            instance_id=instance.instance_id,
            address=instance.address,
            release_id="20261103101500-3f2a9c1",
            seconds={"upload": 1.0, "build": 30.0, "start": 2.0, "healthy": 7.0},
        )


def setup(*ids: str, **changes: Any) -> tuple[FakeElbv2, Clock, list[str]]:
    clock = Clock()
    balancer = FakeElbv2(clock, {i: Target() for i in ids}, **changes)
    return balancer, clock, []


def rolling(balancer: FakeElbv2, log: list[str], **options: Any) -> RollingUpdate:
    clock = balancer.clock
    return RollingUpdate(
        balancer, GROUP, PORT, log=log.append, wait=clock.wait, clock=clock, **options
    )


def test_each_instance_leaves_drains_is_updated_and_is_healthy_before_the_next() -> None:
    balancer, clock, log = setup("i-01", "i-02", "i-03")
    started = clock.now

    results = rolling(balancer, log).run([I1, I2, I3], Updates(balancer))

    assert balancer.calls == [
        ("deregister", "i-01"), ("deploy", "i-01"), ("register", "i-01"),
        ("deregister", "i-02"), ("deploy", "i-02"), ("register", "i-02"),
        ("deregister", "i-03"), ("deploy", "i-03"), ("register", "i-03"),
    ]  # fmt: skip
    # Never fewer than N-1 healthy: every other target served while one was out.
    assert balancer.healthy_others_when_taken_out == [2, 2, 2]
    assert all(balancer.state(t) == "healthy" for t in balancer.targets.values())
    assert [r.instance_id for r in results] == ["i-01", "i-02", "i-03"]
    for result in results:
        # The rolling stages beside the deploy's own steps, in the order they happened.
        assert list(result.seconds) == ["drain", "upload", "build", "start", "healthy", "register"]
        stages = stage_seconds(result)
        assert stages["drain"] == pytest.approx(30.0, abs=2.0)  # the group's delay
        assert stages["deploy"] == 40.0  # the deploy's own steps
        assert stages["register"] == pytest.approx(CHECKS_PASS_AFTER, abs=2.0)
    assert clock.now - started == pytest.approx(3 * (30 + 40 + 20), abs=6.0)
    assert any("i-02 (2 of 3) leaves the load balancer" in line for line in log)
    assert any(line.startswith("rolling: i-03 healthy in the load balancer") for line in log)


def test_the_drain_lasts_as_long_as_the_groups_deregistration_delay() -> None:
    balancer, _clock, log = setup("i-01", "i-02", delay=5.0)
    results = rolling(balancer, log).run([I1, I2], Updates(balancer))
    assert [stage_seconds(r)["drain"] for r in results] == [pytest.approx(6.0, abs=1.0)] * 2


def test_an_instance_still_draining_after_the_delay_and_a_margin_stops_the_update() -> None:
    balancer, clock, log = setup("i-01", "i-02", delay=10.0, drains_forever=True)
    started = clock.now
    with pytest.raises(RollingFailed) as raised:
        rolling(balancer, log).run([I1, I2], Updates(balancer))
    error = raised.value
    assert (error.failed, error.stage, error.updated) == (I1, "drain", [])
    assert isinstance(error.error, TargetsStillDraining)
    assert clock.now - started == pytest.approx(10 + 30, abs=3.0)
    assert ("deploy", "i-01") not in balancer.calls


def test_it_refuses_to_take_an_instance_out_while_another_target_is_not_healthy() -> None:
    balancer, _clock, log = setup("i-01", "i-02", "i-09")
    balancer.targets["i-09"].healthy = False  # in the group, not being updated

    with pytest.raises(RollingRefused) as raised:
        rolling(balancer, log).run([I1, I2], Updates(balancer))

    error = raised.value
    assert error.exit_code == 3
    assert balancer.calls == []  # nothing was taken out
    assert (error.instance, error.updated) == (I1, [])
    assert [h.instance_id for h in error.unhealthy] == ["i-09"]
    assert error.cause == "i-09 is unhealthy (Target.FailedHealthChecks failed)"
    assert "fewer healthy instances than all but one" in error.what


def test_a_target_turning_unhealthy_midway_stops_before_the_next_instance() -> None:
    balancer, _clock, log = setup("i-01", "i-02", "i-03")
    updates = Updates(balancer)

    def and_i03_fails(instance: Instance) -> InstanceRelease:
        balancer.targets["i-03"].healthy = False
        return updates(instance)

    with pytest.raises(RollingRefused) as raised:
        rolling(balancer, log).run([I1, I2, I3], and_i03_fails)
    error = raised.value
    assert error.instance == I2
    assert [r.instance_id for r in error.updated] == ["i-01"]
    assert "already updated: i-01 (20261103101500-3f2a9c1)" in error.details
    assert ("deregister", "i-02") not in balancer.calls


def test_an_instance_already_out_of_service_is_updated_first() -> None:
    """As an earlier update that failed leaves it: deregistered."""
    balancer, _clock, log = setup("i-01", "i-02", "i-03")
    balancer.targets["i-03"] = Target(registered_at=None, deregistered_at=-1e9)

    results = rolling(balancer, log).run([I1, I2, I3], Updates(balancer))

    assert [r.instance_id for r in results] == ["i-03", "i-01", "i-02"]
    assert balancer.calls[:2] == [("deploy", "i-03"), ("register", "i-03")]  # nothing to drain
    assert balancer.healthy_others_when_taken_out == [2, 2]


def test_a_single_instance_is_refused_unless_downtime_is_allowed() -> None:
    balancer, _clock, log = setup("i-01")
    with pytest.raises(RollingRefused) as raised:
        rolling(balancer, log).run([I1], Updates(balancer))
    assert "single instance (i-01) takes the app offline" in raised.value.what
    assert raised.value.next_step is not None and "blue-green" in raised.value.next_step
    assert balancer.calls == []

    [result] = rolling(balancer, log, allow_downtime=True).run([I1], Updates(balancer))
    assert balancer.calls == [("deregister", "i-01"), ("deploy", "i-01"), ("register", "i-01")]
    assert result.seconds["drain"] == pytest.approx(30.0, abs=2.0)


def test_one_instance_of_several_is_not_a_single_instance() -> None:
    """Switching back only the instance an update failed on: the others serve meanwhile."""
    balancer, _clock, log = setup("i-01", "i-02")
    balancer.targets["i-02"] = Target(registered_at=None, deregistered_at=-1e9)
    [result] = rolling(balancer, log).run([I2], Updates(balancer))
    assert result.instance_id == "i-02"
    assert balancer.state(balancer.targets["i-02"]) == "healthy"


def test_a_failed_deploy_stops_the_update_and_leaves_that_instance_out() -> None:
    balancer, _clock, log = setup("i-01", "i-02", "i-03")

    with pytest.raises(RollingFailed) as raised:
        rolling(balancer, log).run([I1, I2, I3], Updates(balancer, fails_on="i-02"))

    error = raised.value
    assert error.exit_code == 1
    assert [r.instance_id for r in error.updated] == ["i-01"]
    assert error.updated[0].seconds["register"] > 0
    assert (error.failed, error.stage) == (I2, "deploy")
    assert isinstance(error.error, DeployFailed)
    assert error.where == "rolling update, deploy on i-02"
    assert error.cause == "npm error code ERESOLVE"
    assert error.details == ["exit code 1", "command: npm ci", "stderr: npm error code ERESOLVE"]
    assert "build failed on i-02" in error.what
    assert error.next_step is not None and "already updated: i-01" in error.next_step
    assert balancer.targets["i-02"].registered_at is None  # left out of the load balancer
    assert ("deregister", "i-03") not in balancer.calls  # and nothing after it touched


def test_an_instance_that_never_gets_healthy_again_is_taken_out_and_stops_the_update() -> None:
    balancer, _clock, log = setup("i-01", "i-02")
    updates = Updates(balancer)

    def breaks_i01(instance: Instance) -> InstanceRelease:
        balancer.targets[instance.instance_id].healthy = False
        return updates(instance)

    with pytest.raises(RollingFailed) as raised:
        rolling(balancer, log, healthy_timeout=60.0).run([I1, I2], breaks_i01)

    error = raised.value
    assert (error.failed, error.stage, error.updated) == (I1, "register", [])
    assert isinstance(error.error, TargetsUnhealthy)
    assert error.cause == "i-01 is unhealthy (Target.FailedHealthChecks failed)"
    assert balancer.calls[-2:] == [("register", "i-01"), ("deregister", "i-01")]
    assert balancer.state(balancer.targets["i-02"]) == "healthy"  # still serving
    assert ("deploy", "i-02") not in balancer.calls


def test_nothing_to_update_is_nothing_done() -> None:
    balancer, _clock, log = setup("i-01")
    assert rolling(balancer, log).run([], Updates(balancer)) == []
    assert balancer.calls == []
