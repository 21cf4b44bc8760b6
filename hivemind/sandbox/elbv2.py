"""The sandbox's Elastic Load Balancing v2 resource types: application load balancers,
their listeners and target groups (with their targets and attributes).

Listeners and target groups update in place, as on AWS, so a blue-green switch
(the listener's default action moving to the other target group) keeps every ARN.
"""

from __future__ import annotations

from typing import Any

from moto.elbv2.models import elbv2_backends

from hivemind.sandbox.provisioning import (
    Context,
    MotoBackend,
    Provisioned,
    ResourceType,
    implements,
    tag_list,
)


def _elbv2(ctx: Context) -> MotoBackend:
    return elbv2_backends[ctx.account_id][ctx.region]


def _key_values(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {item["Key"]: str(item["Value"]) for item in items or []}


class OperationNotPermitted(Exception):
    code = "OperationNotPermitted"


@implements
class LoadBalancer(ResourceType):
    type_name = "AWS::ElasticLoadBalancingV2::LoadBalancer"
    attributes = frozenset(
        {"CanonicalHostedZoneID", "DNSName", "LoadBalancerArn", "LoadBalancerFullName"}
        | {"LoadBalancerName", "SecurityGroups"}
    )

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        elbv2 = _elbv2(ctx)
        name = properties.get("Name") or ctx.generated_name(32)
        balancer = elbv2.create_load_balancer(
            name,
            list(properties.get("SecurityGroups") or []),
            list(properties.get("Subnets") or []),
            subnet_mappings=properties.get("SubnetMappings"),
            scheme=properties.get("Scheme", "internet-facing"),
            loadbalancer_type=properties.get("Type", "application"),
            ip_address_type=properties.get("IpAddressType", "ipv4"),
            tags=tag_list(ctx.tags(properties)),
        )
        attributes = _key_values(properties.get("LoadBalancerAttributes"))
        if attributes:
            elbv2.modify_load_balancer_attributes(balancer.arn, attributes)

        def delete() -> None:
            if balancer.attrs.get("deletion_protection.enabled") == "true":
                raise OperationNotPermitted(
                    f"Load balancer '{balancer.arn}' cannot be deleted because deletion "
                    "protection is enabled"
                )
            elbv2.delete_load_balancer(balancer.arn)

        return Provisioned(
            balancer.arn,
            delete=delete,
            native=balancer,
            attributes={
                "LoadBalancerArn": balancer.arn,
                "DNSName": balancer.dns_name,
                "LoadBalancerName": balancer.name,
                # arn:...:loadbalancer/app/<name>/<id> -> app/<name>/<id>
                "LoadBalancerFullName": balancer.arn.split(":loadbalancer/", 1)[1],
                "CanonicalHostedZoneID": balancer.canonical_hosted_zone_id,
                "SecurityGroups": list(balancer.security_groups),
            },
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if not all(
            old.properties.get(key, default) == properties.get(key, default)
            for key, default in (("Name", None), ("Scheme", "internet-facing"), ("Type", None))
        ):
            return self.create(properties, ctx)
        elbv2 = _elbv2(ctx)
        arn = old.physical_resource_id
        elbv2.set_security_groups(arn, list(properties.get("SecurityGroups") or []))
        elbv2.set_subnets(
            arn, list(properties.get("Subnets") or []), properties.get("SubnetMappings") or []
        )
        attributes = _key_values(properties.get("LoadBalancerAttributes"))
        if attributes:
            elbv2.modify_load_balancer_attributes(arn, attributes)
        return old.rebind(attributes={"SecurityGroups": list(old.native.security_groups)})


@implements
class TargetGroup(ResourceType):
    type_name = "AWS::ElasticLoadBalancingV2::TargetGroup"
    attributes = frozenset(
        {"LoadBalancerArns", "TargetGroupArn", "TargetGroupFullName", "TargetGroupName"}
    )

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        elbv2 = _elbv2(ctx)
        name = properties.get("Name") or ctx.generated_name(32)
        group = elbv2.create_target_group(
            name,
            vpc_id=properties.get("VpcId"),
            protocol=properties.get("Protocol"),
            protocol_version=properties.get("ProtocolVersion"),
            port=properties.get("Port"),
            healthcheck_protocol=properties.get("HealthCheckProtocol"),
            healthcheck_port=properties.get("HealthCheckPort"),
            healthcheck_path=properties.get("HealthCheckPath"),
            healthcheck_interval_seconds=properties.get("HealthCheckIntervalSeconds"),
            healthcheck_timeout_seconds=properties.get("HealthCheckTimeoutSeconds"),
            healthcheck_enabled=properties.get("HealthCheckEnabled"),
            healthy_threshold_count=properties.get("HealthyThresholdCount"),
            unhealthy_threshold_count=properties.get("UnhealthyThresholdCount"),
            matcher=properties.get("Matcher"),
            ip_address_type=properties.get("IpAddressType"),
            target_type=properties.get("TargetType", "instance"),
            tags=tag_list(ctx.tags(properties)),
        )
        self._configure(elbv2, group.arn, properties)
        return Provisioned(
            group.arn,
            delete=lambda: elbv2.delete_target_group(group.arn),
            native=group,
            attributes={
                "TargetGroupArn": group.arn,
                "TargetGroupName": group.name,
                # arn:...:targetgroup/<name>/<id> -> targetgroup/<name>/<id>
                "TargetGroupFullName": "targetgroup/" + group.arn.split(":targetgroup/", 1)[1],
                "LoadBalancerArns": group.load_balancer_arns,
            },
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        # Targets and attributes change in place; a new name or VPC means a new group.
        group = old.native
        if properties.get("Name", group.name) != group.name or properties.get("VpcId") != getattr(
            group, "vpc_id", None
        ):
            return super().update(old, properties, ctx)
        self._configure(_elbv2(ctx), group.arn, properties)
        return old

    @staticmethod
    def _configure(elbv2: MotoBackend, arn: str, properties: dict[str, Any]) -> None:
        attributes = _key_values(properties.get("TargetGroupAttributes"))
        if attributes:
            elbv2.modify_target_group_attributes(arn, attributes)
        wanted = [
            {"Id": t["Id"], **({"Port": t["Port"]} if "Port" in t else {})}
            for t in properties.get("Targets") or []
        ]
        group = elbv2.target_groups[arn]
        stale = [{"Id": i} for i in group.targets if i not in {t["Id"] for t in wanted}]
        if stale:
            elbv2.deregister_targets(arn, stale)
        if wanted:
            elbv2.register_targets(arn, wanted)


@implements
class Listener(ResourceType):
    type_name = "AWS::ElasticLoadBalancingV2::Listener"
    attributes = frozenset({"ListenerArn"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        elbv2 = _elbv2(ctx)
        certificates = elbv2.convert_and_validate_certificates(properties.get("Certificates"))
        listener = elbv2.create_listener(
            properties["LoadBalancerArn"],
            properties.get("Protocol"),
            properties.get("Port"),
            properties.get("SslPolicy"),
            certificates[0]["CertificateArn"] if certificates else None,
            elbv2.convert_and_validate_properties(properties),
            alpn_policy=properties.get("AlpnPolicy"),
        )
        return Provisioned(
            listener.arn,
            delete=lambda: _delete_listener(elbv2, listener.arn),
            native=listener,
            attributes={"ListenerArn": listener.arn},
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if properties["LoadBalancerArn"] != old.native.load_balancer_arn:
            return super().update(old, properties, ctx)
        elbv2 = _elbv2(ctx)
        elbv2.modify_listener(
            old.native.arn,
            properties.get("Port"),
            properties.get("Protocol"),
            properties.get("SslPolicy"),
            elbv2.convert_and_validate_certificates(properties.get("Certificates")),
            elbv2.convert_and_validate_properties(properties),
        )
        return old


def _delete_listener(elbv2: MotoBackend, arn: str) -> None:
    # The listener is already gone when its load balancer went first (AWS deletes a load
    # balancer's listeners with it); CloudFormation treats that as deleted.
    if any(arn in balancer.listeners for balancer in elbv2.load_balancers.values()):
        elbv2.delete_listener(arn)
