"""What a new template would change against the deployed one: added, modified,
replaced and removed resources, with stateful replacements called out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Properties whose change makes CloudFormation replace the resource (from the
# CloudFormation resource reference, "Update requires: Replacement"), for the types
# HiveMind builds. A change to any other property updates in place.
REPLACEMENT_PROPERTIES: dict[str, frozenset[str]] = {
    "AWS::EC2::Instance": frozenset(
        {
            "ImageId",
            "LaunchTemplate",
            "SubnetId",
            "KeyName",
            "AvailabilityZone",
            "PrivateIpAddress",
            "NetworkInterfaces",
            "SecurityGroups",
            "Tenancy",
        }
    ),
    "AWS::RDS::DBInstance": frozenset(
        {
            "Engine",
            "DBName",
            "DBInstanceIdentifier",
            "MasterUsername",
            "AvailabilityZone",
            "StorageEncrypted",
            "KmsKeyId",
            "DBSubnetGroupName",
            "SourceDBInstanceIdentifier",
            "CharacterSetName",
            "Timezone",
        }
    ),
    "AWS::EC2::SecurityGroup": frozenset({"GroupDescription", "GroupName", "VpcId"}),
    "AWS::EC2::Subnet": frozenset({"CidrBlock", "AvailabilityZone", "VpcId"}),
    "AWS::EC2::VPC": frozenset({"CidrBlock", "InstanceTenancy"}),
    "AWS::EC2::NatGateway": frozenset({"SubnetId", "AllocationId", "ConnectivityType"}),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": frozenset({"Name", "Scheme", "Type"}),
    "AWS::ElasticLoadBalancingV2::TargetGroup": frozenset(
        {"Name", "Port", "Protocol", "TargetType", "VpcId"}
    ),
    "AWS::Logs::LogGroup": frozenset({"LogGroupName", "KmsKeyId"}),
    "AWS::CloudWatch::Dashboard": frozenset({"DashboardName"}),
    "AWS::SecretsManager::Secret": frozenset({"Name"}),
    "AWS::EC2::LaunchTemplate": frozenset({"LaunchTemplateName"}),
}
# Replacing these loses data: the database's contents, or an instance's local disk.
STATEFUL_TYPES = frozenset({"AWS::RDS::DBInstance", "AWS::EC2::Volume", "AWS::EC2::Instance"})


@dataclass(frozen=True)
class ResourceChange:
    logical_id: str
    resource_type: str
    properties: tuple[str, ...] = ()  # the properties that differ

    @property
    def stateful(self) -> bool:
        return self.resource_type in STATEFUL_TYPES


@dataclass(frozen=True)
class TemplateDiff:
    added: tuple[ResourceChange, ...] = ()
    modified: tuple[ResourceChange, ...] = ()
    replaced: tuple[ResourceChange, ...] = ()
    removed: tuple[ResourceChange, ...] = ()
    outputs_changed: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (self.added or self.modified or self.replaced or self.removed)

    @property
    def data_at_risk(self) -> tuple[ResourceChange, ...]:
        """Stateful resources that would be replaced or removed."""
        return tuple(c for c in (*self.replaced, *self.removed) if c.stateful)


def _resources(template: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    resources = template.get("Resources", {})
    return resources if isinstance(resources, Mapping) else {}


def diff_templates(deployed: Mapping[str, Any], proposed: Mapping[str, Any]) -> TemplateDiff:
    """Compare two CloudFormation templates resource by resource."""
    before, after = _resources(deployed), _resources(proposed)
    added, modified, replaced, removed = [], [], [], []
    for logical_id in sorted(set(before) | set(after)):
        old, new = before.get(logical_id), after.get(logical_id)
        if old is None:
            added.append(ResourceChange(logical_id, str(new["Type"])))  # type: ignore[index]
            continue
        if new is None:
            removed.append(ResourceChange(logical_id, str(old["Type"])))
            continue
        if old.get("Type") != new.get("Type"):
            replaced.append(ResourceChange(logical_id, str(new["Type"]), ("Type",)))
            continue
        old_props, new_props = old.get("Properties", {}), new.get("Properties", {})
        changed = tuple(
            sorted(
                k for k in set(old_props) | set(new_props) if old_props.get(k) != new_props.get(k)
            )
        )
        if not changed:
            continue
        change = ResourceChange(logical_id, str(new["Type"]), changed)
        if set(changed) & REPLACEMENT_PROPERTIES.get(change.resource_type, frozenset()):
            replaced.append(change)
        else:
            modified.append(change)
    old_outputs, new_outputs = deployed.get("Outputs", {}), proposed.get("Outputs", {})
    outputs = tuple(
        sorted(
            k
            for k in set(old_outputs) | set(new_outputs)
            if old_outputs.get(k) != new_outputs.get(k)
        )
    )
    return TemplateDiff(tuple(added), tuple(modified), tuple(replaced), tuple(removed), outputs)


def template_of(body: str | Mapping[str, Any]) -> dict[str, Any]:
    """A GetTemplate body as a dict: boto3 gives a dict for JSON bodies, and the text
    itself for YAML ones (the CDK CLI sends YAML), read with cfn-lint's CloudFormation
    YAML reader (short forms such as `!Ref` become their long forms)."""
    if isinstance(body, Mapping):
        return dict(body)
    from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

    parsed = cfn_yaml.loads(body)
    if not isinstance(parsed, dict):
        raise ValueError("the template is not a mapping")
    return dict(parsed)
