"""The network: a VPC over two availability zones."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

AZ_COUNT = 2
FLOW_LOG_RETENTION = logs.RetentionDays.ONE_MONTH


class Network(Construct):
    """A VPC over two AZs with VPC flow logs to CloudWatch Logs.

    Subnet tiers: public (load balancer, and the instances in stage-1), private with
    egress through one NAT gateway per AZ (the instances in production; absent when
    ``nat_gateways`` is 0, since private subnets without NAT have no way out), and
    isolated (the database, which needs no internet at all).
    """

    def __init__(self, scope: Construct, construct_id: str, *, nat_gateways: int) -> None:
        super().__init__(scope, construct_id)
        # The private tier always holds its address space, reserved when there is no NAT,
        # so stage-1 and production give every subnet the same CIDR and an upgrade
        # adds the private subnets without colliding with the isolated ones.
        tiers = [
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
            ec2.SubnetConfiguration(
                name="private",
                subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                cidr_mask=24,
                reserved=nat_gateways == 0,
            ),
            ec2.SubnetConfiguration(
                name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
            ),
        ]
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.0.0.0/16"),
            max_azs=AZ_COUNT,
            nat_gateways=nat_gateways,
            subnet_configuration=tiers,
            restrict_default_security_group=False,
        )
        self.flow_log_group = logs.LogGroup(
            self, "FlowLogs", retention=FLOW_LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        self.app_subnets = ec2.SubnetSelection(
            subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
            if nat_gateways > 0
            else ec2.SubnetType.PUBLIC
        )
        self.database_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
