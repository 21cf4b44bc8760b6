"""What a deployment's ops views watch, read from its record: the stack's outputs (log
group, dashboard, X-Ray group, instances, load balancer) and its RDS instances."""

from __future__ import annotations

from dataclasses import dataclass

from hivemind.records import DeploymentState
from hivemind.spec import COLORS


@dataclass(frozen=True)
class Instance:
    instance_id: str
    color: str
    active: bool


@dataclass(frozen=True)
class Watched:
    """The names and ids the ops views query; None (or empty) where the stack has none."""

    deployment_id: str
    region: str
    app: str
    log_group: str | None
    dashboard: str | None
    xray_group: str | None
    instances: tuple[Instance, ...]
    load_balancer: str | None  # CloudWatch's LoadBalancer dimension: app/<name>/<id>
    databases: tuple[str, ...]  # DBInstanceIdentifiers, the primary first


def load_balancer_dimension(arn: str) -> str | None:
    """`app/<name>/<id>` from an ALB's ARN (`...:loadbalancer/app/<name>/<id>`)."""
    _, marker, tail = arn.partition(":loadbalancer/")
    parts = tail.split("/")
    if not marker or len(parts) != 3 or not all(parts):
        return None
    return tail


def watched(state: DeploymentState) -> Watched:
    outputs = state.outputs
    active = outputs.get("ActiveColor", "blue")
    instances = tuple(
        Instance(instance_id, color, color == active)
        for color in COLORS
        for instance_id in outputs.get(f"{color.capitalize()}InstanceIds", "").split(",")
        if instance_id.strip() and instance_id.strip() != "-"
    )
    databases = tuple(
        r.physical_id
        for r in sorted(
            state.resources,
            # The primary before its read replica (CDK names the replica "...Replica...").
            key=lambda r: ("replica" in r.logical_id.lower(), r.logical_id),
        )
        if r.resource_type == "AWS::RDS::DBInstance" and r.physical_id
    )
    arn = outputs.get("LoadBalancerArn")
    return Watched(
        deployment_id=state.deployment_id,
        region=state.region,
        app=state.app,
        log_group=outputs.get("AppLogGroup"),
        dashboard=outputs.get("DashboardName"),
        xray_group=outputs.get("XRayGroup"),
        instances=instances,
        load_balancer=load_balancer_dimension(arn) if arn else None,
        databases=databases,
    )
