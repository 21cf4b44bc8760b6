"""How long CloudFormation will take to create a template, before we ask it to.

CloudFormation creates independent resources in parallel and a resource only
after everything it references exists, so the time to a complete stack is the
longest chain of dependent creations: the critical path. ``estimate_provisioning``
builds the dependency graph from the template (``Ref``, ``Fn::GetAtt``,
``Fn::Sub`` and ``DependsOn``), weighs each resource with ``CREATION_SECONDS``
and returns that path, so a user sees both the total and *why* it takes so long
("the database is 600 s of the 620").
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Typical CloudFormation create durations, from experience: the time between a
# resource's CREATE_IN_PROGRESS and CREATE_COMPLETE stack events, rounded. They
# are estimates for planning and progress bars, not guarantees; a busy region or
# a large database takes longer. Keys "<type> (<variant>)" hold a variant of a
# type whose duration depends on its properties (see ``creation_seconds``).
CREATION_SECONDS: dict[str, int] = {
    # Network plumbing is metadata inside EC2: seconds.
    "AWS::EC2::VPC": 5,
    "AWS::EC2::Subnet": 5,
    "AWS::EC2::RouteTable": 5,
    "AWS::EC2::Route": 5,
    "AWS::EC2::SubnetRouteTableAssociation": 5,
    "AWS::EC2::InternetGateway": 5,
    "AWS::EC2::VPCGatewayAttachment": 20,
    "AWS::EC2::EIP": 5,
    "AWS::EC2::SecurityGroup": 5,
    "AWS::EC2::SecurityGroupIngress": 3,
    "AWS::EC2::SecurityGroupEgress": 3,
    "AWS::EC2::FlowLog": 5,
    # A NAT gateway is a managed appliance that has to boot.
    "AWS::EC2::NatGateway": 100,
    "AWS::EC2::LaunchTemplate": 3,
    # CloudFormation reports an instance complete once it is running, not booted.
    "AWS::EC2::Instance": 40,
    "AWS::ElasticLoadBalancingV2::LoadBalancer": 180,
    "AWS::ElasticLoadBalancingV2::TargetGroup": 15,
    "AWS::ElasticLoadBalancingV2::Listener": 5,
    "AWS::ElasticLoadBalancingV2::ListenerRule": 5,
    # IAM is eventually consistent and CloudFormation waits for propagation.
    "AWS::IAM::Role": 20,
    "AWS::IAM::Policy": 15,
    "AWS::IAM::ManagedPolicy": 15,
    "AWS::IAM::InstanceProfile": 120,
    "AWS::SecretsManager::Secret": 5,
    "AWS::SecretsManager::SecretTargetAttachment": 5,
    "AWS::RDS::DBSubnetGroup": 5,
    "AWS::RDS::DBParameterGroup": 5,
    "AWS::RDS::DBInstance": 600,
    # A standby in a second AZ is built from a snapshot of the primary.
    "AWS::RDS::DBInstance (Multi-AZ)": 900,
    "AWS::RDS::DBInstance (read replica)": 600,
    "AWS::CloudWatch::Dashboard": 3,
    "AWS::CloudWatch::Alarm": 3,
    "AWS::Logs::LogGroup": 3,
    "AWS::XRay::Group": 5,
    "AWS::XRay::SamplingRule": 5,
    "AWS::S3::Bucket": 20,
    "AWS::S3::BucketPolicy": 5,
    "AWS::SNS::Topic": 10,
    "AWS::CDK::Metadata": 1,
}

DEFAULT_CREATION_SECONDS = 30
"""What an unknown resource type (including ``Custom::*``) is assumed to take."""

_SUB_VARIABLE = re.compile(r"\$\{(?!!)([^}]+)\}")


@dataclass(frozen=True)
class PathStep:
    """One resource on the critical path and its estimated creation time."""

    logical_id: str
    resource_type: str
    seconds: int


@dataclass(frozen=True)
class ProvisioningEstimate:
    """The critical path of a template, in creation order, and its total duration."""

    total_seconds: int
    path: tuple[PathStep, ...]


def estimate_provisioning(template: Mapping[str, Any]) -> ProvisioningEstimate:
    """Estimate how long CloudFormation needs to create every resource of ``template``.

    The result is the longest chain of dependent resources, first created to
    last, weighed with ``creation_seconds``. Among equally long chains the one
    whose resources have the smallest logical ids wins, so the answer is the
    same on every run. An empty template takes 0 s.

    Raises ValueError naming the resources of a dependency cycle (CloudFormation
    rejects such a template too).
    """
    resources: Mapping[str, Any] = template.get("Resources") or {}
    dependencies = {
        logical_id: sorted(_dependencies(definition, resources))
        for logical_id, definition in resources.items()
    }
    seconds = {
        logical_id: creation_seconds(_resource_type(definition), _properties(definition))
        for logical_id, definition in resources.items()
    }

    finish: dict[str, int] = {}
    slowest_dependency: dict[str, str | None] = {}
    for logical_id in _creation_order(dependencies):
        before = None
        for dependency in dependencies[logical_id]:  # sorted: the first of equals wins
            if before is None or finish[dependency] > finish[before]:
                before = dependency
        slowest_dependency[logical_id] = before
        finish[logical_id] = seconds[logical_id] + (finish[before] if before else 0)

    if not finish:
        return ProvisioningEstimate(total_seconds=0, path=())
    last = min(finish, key=lambda logical_id: (-finish[logical_id], logical_id))
    path: list[PathStep] = []
    step: str | None = last
    while step is not None:
        path.append(PathStep(step, _resource_type(resources[step]), seconds[step]))
        step = slowest_dependency[step]
    return ProvisioningEstimate(total_seconds=finish[last], path=tuple(reversed(path)))


def creation_seconds(resource_type: str, properties: Mapping[str, Any]) -> int:
    """The estimated creation time of one resource, from ``CREATION_SECONDS``.

    An RDS instance with ``MultiAZ`` takes the Multi-AZ time (also when
    ``MultiAZ`` is an intrinsic function we cannot evaluate: an estimate should
    not be optimistic) and one with ``SourceDBInstanceIdentifier`` the read
    replica time. Unknown types take ``DEFAULT_CREATION_SECONDS``.
    """
    variant = resource_type
    if resource_type == "AWS::RDS::DBInstance":
        multi_az = properties.get("MultiAZ", False)
        if multi_az not in (False, "false", "False"):
            variant = f"{resource_type} (Multi-AZ)"
        elif "SourceDBInstanceIdentifier" in properties:
            variant = f"{resource_type} (read replica)"
    return CREATION_SECONDS.get(variant, DEFAULT_CREATION_SECONDS)


def _resource_type(definition: Any) -> str:
    return str(definition.get("Type", "")) if isinstance(definition, Mapping) else ""


def _properties(definition: Any) -> Mapping[str, Any]:
    properties = definition.get("Properties") if isinstance(definition, Mapping) else None
    return properties if isinstance(properties, Mapping) else {}


def _dependencies(definition: Any, resources: Mapping[str, Any]) -> set[str]:
    """The resources of this template that ``definition`` must wait for."""
    names: set[str] = set(_referenced_names(_properties(definition)))
    depends_on = definition.get("DependsOn") if isinstance(definition, Mapping) else None
    if isinstance(depends_on, str):
        names.add(depends_on)
    elif isinstance(depends_on, list):
        names.update(name for name in depends_on if isinstance(name, str))
    # Parameters, pseudo parameters (AWS::Region) and names the template does
    # not define are not resources CloudFormation has to create first.
    return {name for name in names if name in resources}


def _referenced_names(value: Any) -> Iterator[str]:
    """Every name ``value`` reaches through Ref, Fn::GetAtt or Fn::Sub, anywhere inside it."""
    if isinstance(value, list):
        for item in value:
            yield from _referenced_names(item)
        return
    if not isinstance(value, Mapping):
        return
    if len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref" and isinstance(argument, str):
            yield argument
            return
        if function == "Fn::GetAtt":
            if isinstance(argument, str):
                yield argument.split(".", 1)[0]
                return
            if isinstance(argument, list) and argument and isinstance(argument[0], str):
                yield argument[0]
                yield from _referenced_names(argument[1:])
                return
        if function == "Fn::Sub":
            yield from _sub_names(argument)
            return
    for item in value.values():
        yield from _referenced_names(item)


def _sub_names(argument: Any) -> Iterator[str]:
    """The names a Fn::Sub string uses, except those its own variable map defines."""
    if isinstance(argument, str):
        text, local_names = argument, set[str]()
    elif isinstance(argument, list) and argument and isinstance(argument[0], str):
        text = argument[0]
        variables = argument[1] if len(argument) > 1 else {}
        local_names = set(variables) if isinstance(variables, Mapping) else set()
        yield from _referenced_names(variables)
    else:
        yield from _referenced_names(argument)
        return
    for match in _SUB_VARIABLE.finditer(text):
        # ${Name.Attribute} is a GetAtt; ${!Literal} is escaped and never matches.
        name = match.group(1).strip().split(".", 1)[0]
        if name not in local_names:
            yield name


def _creation_order(dependencies: Mapping[str, list[str]]) -> list[str]:
    """Every resource after all of its dependencies (a depth-first topological sort).

    Raises ValueError with the resources of the first cycle found.
    """
    order: list[str] = []
    done: set[str] = set()
    for root in sorted(dependencies):
        if root in done:
            continue
        # The stack holds the current chain of resources being visited with an
        # iterator over each one's remaining dependencies; a dependency already
        # on the chain closes a cycle.
        chain = [root]
        on_chain = {root}
        pending = [iter(dependencies[root])]
        while pending:
            dependency = next(pending[-1], None)
            if dependency is None:
                finished = chain.pop()
                on_chain.discard(finished)
                pending.pop()
                done.add(finished)
                order.append(finished)
            elif dependency in on_chain:
                cycle = [*chain[chain.index(dependency) :], dependency]
                raise ValueError(
                    "the template's resources depend on each other in a cycle: "
                    + " -> ".join(cycle)
                )
            elif dependency not in done:
                chain.append(dependency)
                on_chain.add(dependency)
                pending.append(iter(dependencies[dependency]))
    return order
