"""The one stack a deployment is: composed from a `DeploymentSpec`."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, CfnParameter, IStackSynthesizer, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from hivemind.deployment_ids import (
    SSH_PUBLIC_KEY_PARAMETER,
    STANDBY_TOKEN_PARAMETER,
    TAG_DEPLOYMENT_ID,
    stack_name,
)
from hivemind.foundation import BOUNDARY_NAME
from hivemind.spec import COLORS, DeploymentSpec
from hivemind_constructs.acknowledge import acknowledge
from hivemind_constructs.dashboard import AGENT_NAMESPACE, MonitoredResources, Monitoring
from hivemind_constructs.database import Database
from hivemind_constructs.network import Network
from hivemind_constructs.tracing import Tracing
from hivemind_constructs.web_tier import WebTier

# Tag names are defined once; every resource in the stack carries them.
TAG_APP = "hivemind:app"
TAG_PROFILE = "hivemind:profile"
NAT_GATEWAYS = {"stage-1": 0, "production": 2}


class DeploymentStack(Stack):
    """Everything one deployment runs on, built from its spec and nothing else.

    `user_data` is the instances' start-up script, rendered by the compiler.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        spec: DeploymentSpec,
        deployment_id: str,
        user_data: str,
        synthesizer: IStackSynthesizer | None = None,
    ) -> None:
        super().__init__(
            scope,
            stack_name(deployment_id),
            description=f"HiveMind deployment {deployment_id} of {spec.app.name} ({spec.profile})",
            synthesizer=synthesizer,
            # Stack tags: CloudFormation puts them on every resource it creates that takes
            # tags, without repeating them in each resource of the template (~10 KB less).
            tags={
                **spec.tags,
                TAG_DEPLOYMENT_ID: deployment_id,
                TAG_APP: spec.app.name,
                TAG_PROFILE: spec.profile,
            },
        )
        self.network = Network(self, "Network", nat_gateways=NAT_GATEWAYS[spec.profile])
        vpc = self.network.vpc
        ssh_public_key = CfnParameter(
            self,
            SSH_PUBLIC_KEY_PARAMETER,
            type="String",
            description="The deployment's SSH public key (OpenSSH ed25519), set by hivemind deploy",
        )
        # Only a load balancer has a standby rule (an app that serves no port has none).
        standby_token = (
            CfnParameter(
                self,
                STANDBY_TOKEN_PARAMETER,
                type="String",
                no_echo=True,
                min_length=32,
                description="The header value that reaches the standby colour through the "
                "load balancer (blue-green checks), set by hivemind deploy",
            ).value_as_string
            if spec.app.port is not None
            else None
        )
        self.web = WebTier(
            self,
            "Web",
            spec=spec,
            vpc=vpc,
            app_subnets=self.network.app_subnets,
            user_data=user_data,
            ssh_public_key=ssh_public_key.value_as_string,
            standby_token=standby_token,
            key_pair_name=stack_name(deployment_id),
        )
        self.database: Database | None = None
        if spec.database.engine != "none":
            self.database = Database(
                self, "Database", spec=spec, vpc=vpc, subnets=self.network.database_subnets
            )
            self.database.allow_from(self.web.instance_security_group)
            # The instances read the database's credentials themselves when the app is
            # deployed (its environment file), so the password never leaves AWS.
            self.database.secret.grant_read(self.web.role)
        self.tracing = (
            Tracing(self, "Tracing", deployment_id=deployment_id, service_name=spec.app.name)
            if spec.xray
            else None
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            spec=spec,
            deployment_id=deployment_id,
            watched=MonitoredResources(
                instances=[i for color in COLORS for i in self.web.instances[color]],
                load_balancer=self.web.load_balancer,
                active_target_group=self.web.target_groups.get(spec.compute.active_color),
                database=self.database.instance if self.database else None,
                replica=self.database.replica if self.database else None,
                xray_group_name=self.tracing.group_name if self.tracing else None,
            ),
        )
        self._grant_the_agent()
        # Every role this stack creates is bounded by the account's hivemind-boundary
        # (hivemind.foundation): whatever is attached to it, it can do no more.
        iam.PermissionsBoundary.of(self).apply(
            iam.ManagedPolicy.from_managed_policy_arn(
                self,
                "Boundary",
                f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:policy/{BOUNDARY_NAME}",
            )
        )
        self._outputs(spec)

    def _grant_the_agent(self) -> None:
        """What the CloudWatch agent on the instances needs, and no more: its streams in
        the deployment's own log group, metrics in its own namespace, and the two
        read-only EC2 calls it makes for dimensions (EC2 has no resource-level
        permissions for them)."""
        role = self.web.role
        log_group = self.monitoring.log_group
        log_group.grant_write(role)
        log_group.grant(role, "logs:DescribeLogStreams")
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": AGENT_NAMESPACE}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ec2:DescribeTags", "ec2:DescribeVolumes"], resources=["*"]
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData takes no resource (it is limited to the agent's "
            "namespace by condition) and ec2:DescribeTags/DescribeVolumes are read-only "
            "calls EC2 offers on no narrower resource",
        )

    def _outputs(self, spec: DeploymentSpec) -> None:
        """Everything later stages read: named outputs, one value each."""
        CfnOutput(self, "VpcId", value=self.network.vpc.vpc_id)
        for color in COLORS:
            ids = [instance.ref for instance in self.web.instances[color]]
            CfnOutput(self, f"{color.capitalize()}InstanceIds", value=",".join(ids) if ids else "-")
            group = self.web.target_groups.get(color)
            if group is not None:
                CfnOutput(self, f"{color.capitalize()}TargetGroupArn", value=group.target_group_arn)
        CfnOutput(self, "ActiveColor", value=spec.compute.active_color)
        if self.web.load_balancer is not None:
            CfnOutput(self, "LoadBalancerDns", value=self.web.load_balancer.load_balancer_dns_name)
            CfnOutput(self, "LoadBalancerArn", value=self.web.load_balancer.load_balancer_arn)
        if self.web.listener is not None:
            CfnOutput(self, "ListenerArn", value=self.web.listener.listener_arn)
        if self.web.connect_endpoint is not None:
            CfnOutput(self, "ConnectEndpointId", value=self.web.connect_endpoint.attr_id)
        CfnOutput(
            self,
            "InstanceSecurityGroupId",
            value=self.web.instance_security_group.security_group_id,
        )
        if self.database is not None:
            CfnOutput(
                self, "DatabaseEndpoint", value=self.database.instance.db_instance_endpoint_address
            )
            CfnOutput(self, "DatabasePort", value=str(self.database.port))
            CfnOutput(self, "DatabaseSecretArn", value=self.database.secret.secret_arn)
            if self.database.replica is not None:
                CfnOutput(
                    self,
                    "DatabaseReplicaEndpoint",
                    value=self.database.replica.db_instance_endpoint_address,
                )
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
        CfnOutput(self, "AppLogGroup", value=self.monitoring.log_group.log_group_name)
        if self.tracing is not None:
            CfnOutput(self, "XRayGroup", value=self.tracing.group_name)
