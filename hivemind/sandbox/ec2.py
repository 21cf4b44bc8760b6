"""The sandbox's EC2 resource types: the network (VPC, subnets, routes, gateways, NAT,
Elastic IPs, security groups and their rules, flow logs) and the instances (key pairs,
launch templates and instances launched from them). Every instance is a real local SSH
host (`hivemind.sandbox.hosts`) whose one loopback address is its private IP, and its
public IP when it has one.

Deletion checks what AWS checks before it lets a network resource go (a subnet
with network interfaces, a VPC with an attached gateway or extra security
groups, an Elastic IP still associated), so a stack that would leave something
behind on AWS fails to delete in the sandbox too instead of leaking silently.

Which property changes replace a resource is CloudFormation's rule for its type
(`provisioning.replacement_rules`); the `update` methods here apply the rest in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moto.ec2.models import ec2_backends
from moto.ec2.utils import generate_dns_from_ip, parse_user_data
from moto.elbv2.models import elbv2_backends
from moto.ssm.models import ssm_backends

from hivemind.sandbox import cloudwatch_agent, hosts, telemetry, user_data
from hivemind.sandbox.host_tools import users
from hivemind.sandbox.provisioning import (
    Context,
    DependencyViolation,
    MotoBackend,
    Provisioned,
    ResourceFailed,
    ResourceType,
    as_bool,
    implements,
    tag_dict,
    tag_list,
)


def _ec2(ctx: Context) -> MotoBackend:
    return ec2_backends[ctx.account_id][ctx.region]


def _tag(ctx: Context, resource_id: str, properties: dict[str, Any]) -> None:
    _ec2(ctx).create_tags([resource_id], ctx.tags(properties))


@implements
class Vpc(ResourceType):
    type_name = "AWS::EC2::VPC"
    attributes = frozenset(
        {"CidrBlock", "CidrBlockAssociations", "DefaultNetworkAcl", "DefaultSecurityGroup"}
        | {"Ipv6CidrBlocks", "VpcId"}
    )

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        vpc = ec2.create_vpc(
            cidr_block=properties["CidrBlock"],
            instance_tenancy=properties.get("InstanceTenancy", "default"),
        )
        for key, attribute in (
            ("EnableDnsSupport", "enable_dns_support"),
            ("EnableDnsHostnames", "enable_dns_hostnames"),
        ):
            if key in properties:
                ec2.modify_vpc_attribute(vpc.id, attribute, as_bool(properties[key]))
        _tag(ctx, vpc.id, properties)
        default_group = ec2.get_security_group_from_name("default", vpc_id=vpc.id)
        acls = ec2.describe_network_acls(filters={"vpc-id": [vpc.id], "default": ["true"]})

        def delete() -> None:
            attached = ec2.describe_internet_gateways(filters={"attachment.vpc-id": [vpc.id]})
            groups = [
                g
                for g in ec2.describe_security_groups(filters={"vpc-id": [vpc.id]})
                if g.name != "default"
            ]
            if attached or groups:
                raise DependencyViolation(
                    f"The vpc '{vpc.id}' has dependencies and cannot be deleted."
                )
            ec2.delete_vpc(vpc.id)

        return Provisioned(
            vpc.id,
            delete=delete,
            native=vpc,
            attributes={
                "VpcId": vpc.id,
                "CidrBlock": vpc.cidr_block,
                "CidrBlockAssociations": [
                    a["association_id"] for a in vpc.get_cidr_block_association_set()
                ],
                "DefaultSecurityGroup": default_group.id if default_group else "",
                "DefaultNetworkAcl": acls[0].id if acls else "",
                "Ipv6CidrBlocks": [],
            },
        )

    def replaces_when(self, name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        # InstanceTenancy: only dedicated to default is a change in place.
        return name != "InstanceTenancy" or new.get(name, "default") != "default"

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        if properties.get("InstanceTenancy", "default") != old.native.instance_tenancy:
            old.native.modify_vpc_tenancy("default")
        for key, attribute in (
            ("EnableDnsSupport", "enable_dns_support"),
            ("EnableDnsHostnames", "enable_dns_hostnames"),
        ):
            if key in properties:
                ec2.modify_vpc_attribute(
                    old.physical_resource_id, attribute, as_bool(properties[key])
                )
        _tag(ctx, old.physical_resource_id, properties)
        return old


@implements
class Subnet(ResourceType):
    type_name = "AWS::EC2::Subnet"
    attributes = frozenset(
        {"AvailabilityZone", "AvailabilityZoneId", "CidrBlock", "NetworkAclAssociationId"}
        | {"SubnetId", "VpcId", "Ipv6CidrBlocks", "OutpostArn"}
    )

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        subnet = ec2.create_subnet(
            vpc_id=properties["VpcId"],
            cidr_block=properties["CidrBlock"],
            availability_zone=properties.get("AvailabilityZone"),
        )
        if "MapPublicIpOnLaunch" in properties:
            ec2.modify_subnet_attribute(
                subnet.id, "map_public_ip_on_launch", as_bool(properties["MapPublicIpOnLaunch"])
            )
        _tag(ctx, subnet.id, properties)

        def delete() -> None:
            in_use = [
                eni.id
                for eni in ec2.get_all_network_interfaces()
                if getattr(eni.subnet, "id", None) == subnet.id
            ]
            if in_use:
                raise DependencyViolation(
                    f"The subnet '{subnet.id}' has dependencies and cannot be deleted "
                    f"(network interfaces {', '.join(in_use)})."
                )
            ec2.delete_subnet(subnet.id)

        return Provisioned(
            subnet.id,
            delete=delete,
            native=subnet,
            attributes={
                "SubnetId": subnet.id,
                "VpcId": subnet.vpc_id,
                "AvailabilityZone": subnet.availability_zone,
                "AvailabilityZoneId": subnet.availability_zone_id,
                "CidrBlock": subnet.cidr_block,
                "NetworkAclAssociationId": "",
                "Ipv6CidrBlocks": [],
                "OutpostArn": "",
            },
        )

    def replaces_when(self, name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        return True  # Ipv6CidrBlock: the sandbox's subnets have no IPv6 to change in place

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        _ec2(ctx).modify_subnet_attribute(
            old.physical_resource_id,
            "map_public_ip_on_launch",
            as_bool(properties.get("MapPublicIpOnLaunch")),
        )
        _tag(ctx, old.physical_resource_id, properties)
        return old


@implements
class RouteTable(ResourceType):
    type_name = "AWS::EC2::RouteTable"
    attributes = frozenset({"RouteTableId"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        table = ec2.create_route_table(vpc_id=properties["VpcId"])
        _tag(ctx, table.id, properties)
        return Provisioned(
            table.id,
            delete=lambda: ec2.delete_route_table(table.id),
            attributes={"RouteTableId": table.id},
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        _tag(ctx, old.physical_resource_id, properties)
        return old


@implements
class SubnetRouteTableAssociation(ResourceType):
    type_name = "AWS::EC2::SubnetRouteTableAssociation"
    attributes = frozenset({"Id"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        association_id = ec2.associate_route_table(
            properties["RouteTableId"], subnet_id=properties["SubnetId"]
        )
        return Provisioned(
            association_id,
            delete=lambda: ec2.disassociate_route_table(association_id),
            attributes={"Id": association_id},
        )


@implements
class Route(ResourceType):
    type_name = "AWS::EC2::Route"
    attributes = frozenset()

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        table_id = properties["RouteTableId"]
        destination = properties.get("DestinationCidrBlock")
        ipv6_destination = properties.get("DestinationIpv6CidrBlock")
        ec2.create_route(
            route_table_id=table_id,
            destination_cidr_block=destination,
            destination_ipv6_cidr_block=ipv6_destination,
            gateway_id=properties.get("GatewayId"),
            instance_id=properties.get("InstanceId"),
            nat_gateway_id=properties.get("NatGatewayId"),
            egress_only_igw_id=properties.get("EgressOnlyInternetGatewayId"),
            transit_gateway_id=properties.get("TransitGatewayId"),
            interface_id=properties.get("NetworkInterfaceId"),
            vpc_peering_connection_id=properties.get("VpcPeeringConnectionId"),
        )
        return Provisioned(
            f"{table_id}|{destination or ipv6_destination}",
            delete=lambda: ec2.delete_route(table_id, destination, ipv6_destination),
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        # A new target for the same destination: ReplaceRoute, as CloudFormation does.
        _ec2(ctx).replace_route(
            properties["RouteTableId"],
            properties.get("DestinationCidrBlock"),
            destination_ipv6_cidr_block=properties.get("DestinationIpv6CidrBlock"),
            nat_gateway_id=properties.get("NatGatewayId"),
            egress_only_igw_id=properties.get("EgressOnlyInternetGatewayId"),
            transit_gateway_id=properties.get("TransitGatewayId"),
            gateway_id=properties.get("GatewayId"),
            instance_id=properties.get("InstanceId"),
            interface_id=properties.get("NetworkInterfaceId"),
            vpc_peering_connection_id=properties.get("VpcPeeringConnectionId"),
        )
        return old


@implements
class InternetGateway(ResourceType):
    type_name = "AWS::EC2::InternetGateway"
    attributes = frozenset({"InternetGatewayId"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        gateway = ec2.create_internet_gateway()
        _tag(ctx, gateway.id, properties)
        return Provisioned(
            gateway.id,
            delete=lambda: ec2.delete_internet_gateway(gateway.id),
            attributes={"InternetGatewayId": gateway.id},
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        _tag(ctx, old.physical_resource_id, properties)
        return old


@implements
class VpcGatewayAttachment(ResourceType):
    type_name = "AWS::EC2::VPCGatewayAttachment"
    attributes = frozenset()

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        vpc_id = properties["VpcId"]
        gateway_id = properties.get("InternetGatewayId")
        if not gateway_id:
            raise NotImplementedError("the sandbox attaches internet gateways only")
        ec2.attach_internet_gateway(gateway_id, vpc_id)
        return Provisioned(
            f"IGW|{vpc_id}",
            delete=lambda: ec2.detach_internet_gateway(gateway_id, vpc_id),
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        # Another gateway for the same VPC: detached, and the new one attached.
        old.delete(ctx.account_id, ctx.region)
        new = self.create(properties, ctx)
        return old.rebind(delete=lambda: new.delete(ctx.account_id, ctx.region))


@implements
class ElasticIp(ResourceType):
    type_name = "AWS::EC2::EIP"
    attributes = frozenset({"AllocationId", "PublicIp"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        address = ec2.allocate_address(domain=properties.get("Domain") or "vpc")
        allocation_id = address.allocation_id
        _tag(ctx, allocation_id, properties)
        if properties.get("InstanceId"):
            ec2.associate_address(
                instance=ec2.get_instance_by_id(properties["InstanceId"]),
                allocation_id=allocation_id,
            )

        def delete() -> None:
            if address.eni is not None and address.instance is None:
                # AWS refuses to release an address a NAT gateway or interface still holds.
                raise DependencyViolation(
                    f"Address {address.public_ip} is in use (InvalidIPAddress.InUse)."
                )
            ec2.release_address(allocation_id=allocation_id)

        return Provisioned(
            address.public_ip,
            delete=delete,
            native=address,
            attributes={"AllocationId": allocation_id, "PublicIp": address.public_ip},
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        address = old.native
        if (properties.get("Domain") or "vpc") != (old.properties.get("Domain") or "vpc"):
            raise ResourceFailed(
                ctx.logical_id,
                "The sandbox cannot move an Elastic IP to another Domain in place",
                "update",
            )
        if properties.get("InstanceId") != old.properties.get("InstanceId"):
            if address.instance is not None:
                ec2.disassociate_address(address=address.public_ip)
            if properties.get("InstanceId"):
                ec2.associate_address(
                    instance=ec2.get_instance_by_id(properties["InstanceId"]),
                    allocation_id=address.allocation_id,
                )
        _tag(ctx, address.allocation_id, properties)
        return old


@implements
class NatGateway(ResourceType):
    type_name = "AWS::EC2::NatGateway"
    attributes = frozenset({"NatGatewayId"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        gateway = ec2.create_nat_gateway(
            properties["SubnetId"],
            properties.get("AllocationId"),
            tags=ctx.tags(properties),
            connectivity_type=properties.get("ConnectivityType", "public"),
        )

        def delete() -> None:
            ec2.delete_nat_gateway(gateway.id)
            # moto marks the gateway deleted but keeps its interface and Elastic IP
            # association; AWS releases both.
            interface = gateway._eni
            for address in ec2.addresses:
                if address.eni is interface:
                    ec2.disassociate_address(address=address.public_ip)
            if interface.id in ec2.enis:
                interface.delete()

        return Provisioned(gateway.id, delete=delete, attributes={"NatGatewayId": gateway.id})


def _rule_arguments(properties: dict[str, Any], *, egress: bool) -> dict[str, Any]:
    """A CloudFormation security group rule as moto's authorize/revoke arguments."""
    description = properties.get("Description")
    ip_ranges: list[dict[str, Any]] = []
    if properties.get("CidrIp"):
        ip_ranges.append({"CidrIp": properties["CidrIp"], "Description": description})
    if properties.get("CidrIpv6"):
        ip_ranges.append({"CidrIpv6": properties["CidrIpv6"], "Description": description})
    other_group = properties.get(
        "DestinationSecurityGroupId" if egress else "SourceSecurityGroupId"
    )
    source_groups = []
    if other_group:
        pair = {"GroupId": other_group, "Description": description}
        if properties.get("SourceSecurityGroupOwnerId"):
            pair["UserId"] = properties["SourceSecurityGroupOwnerId"]
        source_groups.append(pair)
    prefix_list = properties.get("DestinationPrefixListId" if egress else "SourcePrefixListId")
    protocol = str(properties.get("IpProtocol", "-1"))
    return {
        "ip_protocol": protocol,
        "from_port": properties.get("FromPort", -1 if protocol in ("-1", "icmp") else None),
        "to_port": properties.get("ToPort", -1 if protocol in ("-1", "icmp") else None),
        "ip_ranges": ip_ranges,
        "source_groups": source_groups,
        "prefix_list_ids": [{"PrefixListId": prefix_list}] if prefix_list else [],
    }


@implements
class SecurityGroup(ResourceType):
    type_name = "AWS::EC2::SecurityGroup"
    attributes = frozenset({"GroupId", "VpcId"})
    name_property = "GroupName"

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        name = properties.get("GroupName") or ctx.generated_name(255)
        group = ec2.create_security_group(
            name, properties.get("GroupDescription", ""), vpc_id=properties.get("VpcId")
        )
        _tag(ctx, group.id, properties)
        # A template's egress rules replace the default allow-all rule.
        if properties.get("SecurityGroupEgress") is not None:
            group.egress_rules.clear()
        _authorize_inline_rules(ec2, group.id, properties)

        def delete() -> None:
            users = [
                eni.id
                for eni in ec2.get_all_network_interfaces()
                if group.id in [g.id for g in eni.group_set]
            ]
            if users:
                raise DependencyViolation(
                    f"resource {group.id} has a dependent object ({', '.join(users)})"
                )
            ec2.delete_security_group(group_id=group.id)

        return Provisioned(
            group.id,
            delete=delete,
            native=group,
            attributes={"GroupId": group.id, "VpcId": group.vpc_id},
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        # Inline rules change in place: the old template's go, the new template's come.
        # Rules of separate SecurityGroupIngress/Egress resources are theirs, and stay.
        ec2 = _ec2(ctx)
        group_id = old.physical_resource_id
        _revoke_inline_rules(ec2, group_id, old.properties)
        if old.properties.get("SecurityGroupEgress") is None:
            ec2.revoke_security_group_egress(group_id, **_ALLOW_ALL_EGRESS)
        if properties.get("SecurityGroupEgress") is None:
            ec2.authorize_security_group_egress(group_id, **_ALLOW_ALL_EGRESS)
        _authorize_inline_rules(ec2, group_id, properties)
        _tag(ctx, group_id, properties)
        return old


# The rule AWS gives a VPC security group whose template names no egress rules.
_ALLOW_ALL_EGRESS: dict[str, Any] = {
    "ip_protocol": "-1",
    "from_port": None,
    "to_port": None,
    "ip_ranges": [{"CidrIp": "0.0.0.0/0"}],
}


def _revoke_inline_rules(ec2: MotoBackend, group_id: str, properties: dict[str, Any]) -> None:
    for rule in properties.get("SecurityGroupIngress") or []:
        ec2.revoke_security_group_ingress(group_id, **_rule_arguments(rule, egress=False))
    for rule in properties.get("SecurityGroupEgress") or []:
        ec2.revoke_security_group_egress(group_id, **_rule_arguments(rule, egress=True))


def _authorize_inline_rules(ec2: MotoBackend, group_id: str, properties: dict[str, Any]) -> None:
    for rule in properties.get("SecurityGroupIngress") or []:
        ec2.authorize_security_group_ingress(group_id, **_rule_arguments(rule, egress=False))
    for rule in properties.get("SecurityGroupEgress") or []:
        ec2.authorize_security_group_egress(group_id, **_rule_arguments(rule, egress=True))


class _SecurityGroupRule(ResourceType):
    egress = False

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        group_id = properties.get("GroupId") or properties.get("GroupName")
        arguments = _rule_arguments(properties, egress=self.egress)
        authorize = (
            ec2.authorize_security_group_egress
            if self.egress
            else ec2.authorize_security_group_ingress
        )
        revoke = (
            ec2.revoke_security_group_egress if self.egress else ec2.revoke_security_group_ingress
        )
        rules, _group = authorize(group_id, **arguments)
        rule_id = rules[0].id if rules else f"{group_id}-rule"
        return Provisioned(
            rule_id,
            delete=lambda: revoke(group_id, **arguments),
            attributes={"Id": rule_id},
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        # Every change replaces a rule; the old one goes first, or an identical new rule
        # (a changed description, say) would be a duplicate.
        old.delete(ctx.account_id, ctx.region)
        new = self.create(properties, ctx)
        return old.rebind(
            physical_id=new.physical_resource_id,
            delete=lambda: new.delete(ctx.account_id, ctx.region),
            attributes=new.attributes,
        )


@implements
class SecurityGroupIngress(_SecurityGroupRule):
    type_name = "AWS::EC2::SecurityGroupIngress"
    attributes = frozenset({"Id"})


@implements
class SecurityGroupEgress(_SecurityGroupRule):
    type_name = "AWS::EC2::SecurityGroupEgress"
    attributes = frozenset({"Id"})
    egress = True


@implements
class FlowLog(ResourceType):
    type_name = "AWS::EC2::FlowLog"
    attributes = frozenset({"Id"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        flow_logs, errors = ec2.create_flow_logs(
            resource_type=properties["ResourceType"],
            resource_ids=[properties["ResourceId"]],
            traffic_type=properties.get("TrafficType", "ALL"),
            deliver_logs_permission_arn=properties.get("DeliverLogsPermissionArn"),
            log_destination_type=properties.get("LogDestinationType", "cloud-watch-logs"),
            log_destination=properties.get("LogDestination"),
            log_group_name=properties.get("LogGroupName"),
            log_format=properties.get("LogFormat"),
            max_aggregation_interval=properties.get("MaxAggregationInterval", 600),
        )
        if errors or not flow_logs:
            raise RuntimeError(f"flow log not created: {errors}")
        flow_log_id = flow_logs[0].id
        _tag(ctx, flow_log_id, properties)
        return Provisioned(
            flow_log_id,
            delete=lambda: ec2.delete_flow_logs([flow_log_id]),
            attributes={"Id": flow_log_id},
        )


@implements
class KeyPair(ResourceType):
    """An EC2 key pair: the public key given (`PublicKeyMaterial`) imported, or a new pair
    whose private key CloudFormation keeps in SSM as `/ec2/keypair/<key pair id>`."""

    type_name = "AWS::EC2::KeyPair"
    attributes = frozenset({"KeyFingerprint", "KeyPairId"})
    # Every property of a key pair, tags included, replaces it.
    name_property = "KeyName"

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        name = properties.get("KeyName") or ctx.generated_name(255)
        tags = ctx.tags(properties)
        material = properties.get("PublicKeyMaterial")
        if material:
            pair = ec2.import_key_pair(name, str(material).strip().encode(), tags)
            private_key_parameter = None
        else:
            pair = ec2.create_key_pair(name, properties.get("KeyType") or "rsa", tags)
            private_key_parameter = f"/ec2/keypair/{pair.id}"
            ssm: MotoBackend = ssm_backends[ctx.account_id][ctx.region]
            ssm.put_parameter(
                name=private_key_parameter,
                description=f"The private key of key pair {name}",
                value=pair.key_material,
                parameter_type="SecureString",
                allowed_pattern=None,
                keyid=None,
                overwrite=False,
                tags=tag_list(tags),
                data_type="text",
                tier=None,
                policies=None,
            )

        def delete() -> None:
            ec2.delete_key_pair(name)
            if private_key_parameter:
                ssm = ssm_backends[ctx.account_id][ctx.region]
                if private_key_parameter in ssm._parameters:
                    ssm.delete_parameter(private_key_parameter)

        return Provisioned(
            name,
            delete=delete,
            native=pair,
            attributes={"KeyPairId": pair.id, "KeyFingerprint": pair.key_fingerprint},
        )


@implements
class LaunchTemplate(ResourceType):
    type_name = "AWS::EC2::LaunchTemplate"
    attributes = frozenset({"DefaultVersionNumber", "LatestVersionNumber", "LaunchTemplateId"})
    name_property = "LaunchTemplateName"

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        data = dict(properties.get("LaunchTemplateData") or {})
        if data.get("UserData") is not None:
            data["UserData"] = parse_user_data(data["UserData"])
        name = properties.get("LaunchTemplateName") or ctx.generated_name(128)
        tag_spec = {
            spec["ResourceType"]: {tag["Key"]: tag["Value"] for tag in spec.get("Tags", [])}
            for spec in properties.get("TagSpecifications") or []
        }
        tag_spec["launch-template"] = {
            **tag_spec.get("launch-template", {}),
            **ctx.tags(properties),
        }
        template = ec2.create_launch_template(
            name, properties.get("VersionDescription"), data, tag_spec
        )
        return Provisioned(
            template.id,
            delete=lambda: ec2.delete_launch_template(template.name, template.id),
            native=template,
            attributes={
                "LaunchTemplateId": template.id,
                "DefaultVersionNumber": str(template.default_version_number),
                "LatestVersionNumber": str(template.latest_version_number),
            },
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        # New template data is a new version, which becomes the default.
        template = old.native
        data = dict(properties.get("LaunchTemplateData") or {})
        if data.get("UserData") is not None:
            data["UserData"] = parse_user_data(data["UserData"])
        version = template.create_version(data, properties.get("VersionDescription"))
        template.default_version_number = version.number
        return old.rebind(
            attributes={
                "DefaultVersionNumber": str(version.number),
                "LatestVersionNumber": str(version.number),
            }
        )


@implements
class Instance(ResourceType):
    type_name = "AWS::EC2::Instance"
    attributes = frozenset(
        {"AvailabilityZone", "InstanceId", "PrivateDnsName", "PrivateIp"}
        | {"PublicDnsName", "PublicIp", "VpcId"}
    )

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = _ec2(ctx)
        launch_template = _launch_template_argument(properties.get("LaunchTemplate"))
        template_data: dict[str, Any] = (
            ec2._get_template_from_args(launch_template).data if launch_template else {}
        )
        reservation = ec2.run_instances(
            properties.get("ImageId"),
            1,
            parse_user_data(properties.get("UserData")),  # base64, as in the template
            list(properties.get("SecurityGroups") or []),
            instance_type=properties.get("InstanceType") or "m1.small",
            is_instance_type_default=not properties.get("InstanceType"),
            region_name=ctx.region,
            subnet_id=properties.get("SubnetId"),
            key_name=properties.get("KeyName"),
            security_group_ids=list(properties.get("SecurityGroupIds") or []),
            private_ip=properties.get("PrivateIpAddress"),
            launch_template=launch_template,
            tags={"instance": ctx.tags(properties)},
            metadata_options=template_data.get("MetadataOptions") or {},
            monitoring_state="enabled" if as_bool(properties.get("Monitoring")) else "disabled",
            disable_api_termination=as_bool(properties.get("DisableApiTermination")),
            # None: as the subnet's MapPublicIpOnLaunch says (moto's default is never).
            associate_public_ip=_associate_public_ip(template_data),
        )
        instance = reservation.instances[0]
        profile = properties.get("IamInstanceProfile") or template_data.get("IamInstanceProfile")
        if profile:
            _associate_profile(ec2, instance.id, profile)

        def terminate() -> None:
            ec2.terminate_instances([instance.id])
            ec2.iam_instance_profile_associations.pop(instance.id, None)
            elbv2_backends[ctx.account_id][ctx.region].notify_terminate_instances([instance.id])
            # AWS deletes an instance's own interfaces with it; moto keeps some.
            for interface in list(instance.nics.values()):
                if interface.id in ec2.enis:
                    interface.delete()

        host: hosts.SandboxHost | None = None
        # How far the user data gets: a `dnf install` of a package AL2023 lacks stops it.
        outcome = user_data.follow(
            cloudwatch_agent.user_data_scripts(telemetry.user_data_of(instance))
        )
        try:
            host = hosts.start_host(
                instance.id,
                authorized_key=lambda: _authorized_key(ec2, instance),
                region=ctx.region,
                # The users its user data would create (`useradd`): sudo -u and chown know them.
                users=users.users_created(outcome.ran),
            )
            _assign_address(instance, host.address)
            if outcome.failure is None:
                # What the user data would start on AWS: the CloudWatch agent, the X-Ray
                # daemon.
                telemetry.watch_instance(
                    host, instance, account_id=ctx.account_id, region=ctx.region
                )
            else:
                _user_data_failed(host, outcome.failure)
        except Exception:
            if host is not None:
                host.stop()
            terminate()
            raise
        running = host

        def delete() -> None:
            running.stop()
            terminate()

        return Provisioned(
            instance.id,
            delete=delete,
            native=instance,
            attributes={
                "InstanceId": instance.id,
                "AvailabilityZone": instance.placement.zone,
                "PrivateIp": instance.private_ip or "",
                "PrivateDnsName": instance.private_dns_name,
                "PublicIp": instance.public_ip or "",
                "PublicDnsName": instance.public_dns_name or "",
                "VpcId": instance.vpc_id or "",
            },
        )

    # What the sandbox changes in place of the properties CloudFormation replaces an
    # instance for only under conditions (on AWS a stop and start for an EBS-backed
    # instance). For the others (Tenancy, BlockDeviceMappings, KernelId...) the sandbox
    # takes the condition to hold and replaces the instance.
    _CONDITIONS_KEPT_IN_PLACE = frozenset(
        {"InstanceType", "UserData", "SecurityGroupIds", "EbsOptimized"}
    )

    def replaces_when(self, name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        return name not in self._CONDITIONS_KEPT_IN_PLACE

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        """The instance keeps running (its host, address and files); what moto models of
        the changed properties changes, and the rest (credit specification, shutdown
        behaviour...) is kept as given."""
        ec2 = _ec2(ctx)
        instance = old.native
        before = old.properties

        def changed(key: str) -> bool:
            return before.get(key) != properties.get(key)

        if changed("InstanceType"):
            instance.instance_type = properties.get("InstanceType") or "m1.small"
        if changed("UserData"):
            instance.user_data = parse_user_data(properties.get("UserData"))
        if changed("SecurityGroupIds"):
            group_ids = list(properties.get("SecurityGroupIds") or [])
            ec2.modify_instance_security_groups(instance.id, group_ids)
            # AWS's security groups are the primary interface's (deleting an old group
            # checks the interfaces): the interface keeps only the new ones.
            instance.nics[0]._group_set = list(instance.security_groups)
        if changed("Monitoring"):
            monitored = as_bool(properties.get("Monitoring"))
            instance.monitoring_state = "enabled" if monitored else "disabled"
        if changed("DisableApiTermination"):
            instance.disable_api_termination = as_bool(properties.get("DisableApiTermination"))
        if changed("IamInstanceProfile"):
            association = ec2.iam_instance_profile_associations.get(instance.id)
            if association is not None:
                ec2.disassociate_iam_instance_profile(association.association_id)
            if properties.get("IamInstanceProfile"):
                _associate_profile(ec2, instance.id, properties["IamInstanceProfile"])
        if changed("Tags"):
            stale = set(tag_dict(before.get("Tags"))) - set(tag_dict(properties.get("Tags")))
            if stale:
                ec2.delete_tags([instance.id], {key: None for key in stale})
            _tag(ctx, instance.id, properties)
        return old


USER_DATA_LOG = "var/log/hivemind-user-data.log"  # where HiveMind's user data tees itself
CLOUD_INIT_LOG = "var/log/cloud-init-output.log"


def _user_data_failed(host: hosts.SandboxHost, failure: list[str]) -> None:
    """What an instance whose user data stopped at a failing command keeps: dnf's error in
    the user data's own log and in cloud-init's, which then names the failed script."""
    for name in (USER_DATA_LOG, CLOUD_INIT_LOG):
        path = host.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = list(failure)
        if name == CLOUD_INIT_LOG:
            lines += [
                "util.py[WARNING]: Failed running /var/lib/cloud/instance/scripts/part-001 [1]",
                "cc_scripts_user.py[WARNING]: Failed to run module scripts_user (scripts in "
                "/var/lib/cloud/instance/scripts)",
            ]
        path.write_text("\n".join(lines) + "\n")


def _associate_public_ip(template_data: dict[str, Any]) -> bool | None:
    """Whether the launch template's first network interface asks for a public IP (None:
    it does not say)."""
    interfaces = template_data.get("NetworkInterfaces") or [{}]
    value = interfaces[0].get("AssociatePublicIpAddress")
    return None if value is None else as_bool(value)


def _authorized_key(ec2: MotoBackend, instance: Any) -> str | None:
    """The public key that logs in to `instance` now: its key pair's (the instance's
    KeyName, which moto takes from the launch template when the instance names none)."""
    pair = ec2.key_pairs.get(instance.key_name) if instance.key_name else None
    if pair is None:
        return None
    material = pair.material_public
    return material.decode() if isinstance(material, bytes) else str(material)


def _assign_address(instance: Any, address: str) -> None:
    """Make the host's loopback address the instance's private IP (its primary interface's,
    which DescribeInstances reports), and its public IP when moto gave it one."""
    interface = instance.nics[0]
    previous = interface.private_ip_address
    if interface.subnet is not None and previous:
        interface.subnet.del_subnet_ip(previous)
    instance._private_ips.discard(previous)
    interface.private_ip_address = address
    for entry in interface.private_ip_addresses:
        if entry.get("Primary") or entry.get("PrivateIpAddress") == previous:
            entry["PrivateIpAddress"] = address
            if "PrivateDnsName" in entry:
                entry["PrivateDnsName"] = generate_dns_from_ip(address)
    if getattr(interface, "private_dns_name", None):
        interface.private_dns_name = generate_dns_from_ip(address)
    if interface.public_ip:
        interface.public_ip = address


def _launch_template_argument(value: dict[str, Any] | None) -> dict[str, Any]:
    if not value:
        return {}
    argument = {
        key: value[key] for key in ("LaunchTemplateId", "LaunchTemplateName") if value.get(key)
    }
    if value.get("Version") is not None:
        argument["Version"] = str(value["Version"])
    return argument


def _associate_profile(ec2: MotoBackend, instance_id: str, profile: Any) -> None:
    """An instance's IAM instance profile: a name (Instance) or {Arn|Name} (launch template)."""
    if isinstance(profile, dict):
        arn, name = profile.get("Arn"), profile.get("Name")
    else:
        arn, name = None, str(profile)
    ec2.associate_iam_instance_profile(
        instance_id=instance_id, iam_instance_profile_name=name, iam_instance_profile_arn=arn
    )
