"""The web tier: blue and green instance sets from one launch template, behind an ALB.

The listener forwards to the active colour's target group; a rule forwards requests that
carry the standby header and token to the standby colour's group, which is how a
blue-green update checks the new instances through the load balancer before switching.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_elasticloadbalancingv2_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from hivemind.deployment_ids import STANDBY_HEADER
from hivemind.spec import COLORS, Color, DeploymentSpec
from hivemind_constructs.acknowledge import acknowledge

STANDBY_RULE_PRIORITY = 10
# The instance role's AWS managed policy: X-Ray's writes, with --xray. No Session Manager
# (AmazonSSMManagedInstanceCore reads every SSM parameter of the region; the deploy uses
# SSH), and no CloudWatchAgentServerPolicy (logs and metrics anywhere in the account): the
# stack grants the agent the deployment's own log group and metrics namespace instead.
MANAGED_POLICIES: tuple[str, ...] = ()
XRAY_POLICY = "AWSXrayWriteOnlyAccess"
# Graviton instance families run arm64 images.
_ARM_FAMILIES = ("a1", "t4g", "m6g", "m7g", "m8g", "c6g", "c7g", "c8g", "r6g", "r7g", "r8g")


class WebTier(Construct):
    """Instances (IMDSv2 only, encrypted gp3 root, least-privilege role) in two colour sets,
    each with its own target group; the load balancer's listener forwards to the active one.

    Attributes: `load_balancer` (None when the app serves no port), `listener`,
    `target_groups` and `instances` by colour, `instance_security_group`, `role`, `key_pair`,
    `connect_endpoint` (None when the instances are in public subnets).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: DeploymentSpec,
        vpc: ec2.IVpc,
        app_subnets: ec2.SubnetSelection,
        user_data: str,
        ssh_public_key: str,
        key_pair_name: str,
        standby_token: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        app = spec.app
        # The deploy's SSH key: CloudFormation imports the public half; the private half
        # never leaves the operator's deployment record.
        self.key_pair = ec2.KeyPair(
            self,
            "KeyPair",
            key_pair_name=key_pair_name,
            public_key_material=ssh_public_key,
        )

        self.role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=f"HiveMind instances of {app.name}",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(policy)
                for policy in MANAGED_POLICIES + (XRAY_POLICY,) * spec.xray
            ],
        )
        for policy in MANAGED_POLICIES + (XRAY_POLICY,) * spec.xray:
            acknowledge(
                self.role,
                f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]",
                "an AWS managed policy scoped to exactly one job the instance does: the "
                "X-Ray daemon's writes of segments and telemetry",
            )

        self.instance_security_group = ec2.SecurityGroup(
            self,
            "InstanceSecurityGroup",
            vpc=vpc,
            description=f"{app.name} instances: app port from the load balancer only",
            allow_all_outbound=True,
        )
        if spec.access.ssh_cidr:
            peer = (
                ec2.Peer.ipv6(spec.access.ssh_cidr)
                if ":" in spec.access.ssh_cidr
                else ec2.Peer.ipv4(spec.access.ssh_cidr)
            )
            self.instance_security_group.add_ingress_rule(
                peer, ec2.Port.tcp(22), "SSH from the operator address only"
            )

        subnets = vpc.select_subnets(subnet_type=app_subnets.subnet_type, one_per_az=True).subnets
        # During an upgrade to production the stage-1 colour keeps its public subnets, so
        # its instances are not replaced while the other colour is built in private ones.
        public = vpc.select_subnets(subnet_type=ec2.SubnetType.PUBLIC, one_per_az=True).subnets
        placed = {
            color: public if color == spec.compute.public_color else subnets for color in COLORS
        }
        # Instances in private subnets are reached for the deploy through an EC2 Instance
        # Connect Endpoint: SSH from the endpoint only, no port open to the internet.
        self.connect_endpoint: ec2.CfnInstanceConnectEndpoint | None = None
        if app_subnets.subnet_type != ec2.SubnetType.PUBLIC:
            endpoint_security_group = ec2.SecurityGroup(
                self,
                "ConnectEndpointSecurityGroup",
                vpc=vpc,
                description=f"{app.name} EC2 Instance Connect Endpoint: SSH to the instances",
                allow_all_outbound=False,
            )
            endpoint_security_group.add_egress_rule(
                self.instance_security_group, ec2.Port.tcp(22), "SSH to the instances"
            )
            self.instance_security_group.add_ingress_rule(
                endpoint_security_group,
                ec2.Port.tcp(22),
                "SSH through the EC2 Instance Connect Endpoint",
            )
            self.connect_endpoint = ec2.CfnInstanceConnectEndpoint(
                self,
                "ConnectEndpoint",
                subnet_id=subnets[0].subnet_id,
                security_group_ids=[endpoint_security_group.security_group_id],
                preserve_client_ip=False,
            )

        family = spec.compute.instance_type.split(".")[0]
        cpu = (
            ec2.AmazonLinuxCpuType.ARM_64
            if family in _ARM_FAMILIES
            else ec2.AmazonLinuxCpuType.X86_64
        )
        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=ec2.InstanceType(spec.compute.instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=cpu),
            require_imdsv2=True,
            http_put_response_hop_limit=1,
            role=self.role,
            key_pair=self.key_pair,
            security_group=self.instance_security_group,
            user_data=ec2.UserData.custom(user_data),
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        spec.compute.root_volume_gb,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
            detailed_monitoring=False,
        )

        self.instances: dict[Color, list[ec2.CfnInstance]] = {}
        for color in COLORS:
            self.instances[color] = []
            for index in range(spec.compute.instances(color)):
                instance = ec2.CfnInstance(
                    self,
                    f"{color.capitalize()}{index + 1}",
                    launch_template=ec2.CfnInstance.LaunchTemplateSpecificationProperty(
                        launch_template_id=self.launch_template.launch_template_id,
                        version=self.launch_template.latest_version_number,
                    ),
                    subnet_id=placed[color][index % len(placed[color])].subnet_id,
                    monitoring=False,
                )
                acknowledge(
                    instance,
                    "AwsSolutions-EC28",
                    "basic monitoring plus the CloudWatch agent's memory and disk metrics "
                    "feed the dashboard; 1-minute detailed monitoring is not worth its cost here",
                )
                acknowledge(
                    instance,
                    "AwsSolutions-EC29",
                    "instances are replaceable: the app is redeployed from its repository, "
                    "state lives in RDS; termination protection would block blue-green swaps",
                )
                self.instances[color].append(instance)

        self.load_balancer: elbv2.ApplicationLoadBalancer | None = None
        self.listener: elbv2.ApplicationListener | None = None
        self.target_groups: dict[Color, elbv2.ApplicationTargetGroup] = {}
        if app.port is not None:
            assert standby_token is not None, "a load balancer needs the standby token"
            self._load_balancer(spec, vpc, app.port, standby_token)

    def _load_balancer(
        self, spec: DeploymentSpec, vpc: ec2.IVpc, port: int, standby_token: str
    ) -> None:
        alb_security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=vpc,
            description=f"{spec.app.name} load balancer: HTTP and HTTPS from the internet",
            allow_all_outbound=False,
        )
        alb_security_group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(80), "HTTP")
        if spec.access.certificate_arn:
            alb_security_group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS")
        acknowledge(
            alb_security_group,
            "AwsSolutions-EC23",
            "a public web app's load balancer accepts HTTP(S) from anywhere; only ports "
            "80 and 443 are open, and the instances accept traffic from this group only",
        )
        self.instance_security_group.add_ingress_rule(
            alb_security_group, ec2.Port.tcp(port), "the app port, from the load balancer"
        )
        alb_security_group.add_egress_rule(
            self.instance_security_group, ec2.Port.tcp(port), "to the app port of the instances"
        )

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=alb_security_group,
            drop_invalid_header_fields=True,
        )
        acknowledge(
            self.load_balancer,
            "AwsSolutions-ELB2",
            "access logs need an S3 bucket that outlives the stack; HiveMind's request "
            "metrics and the app's own logs are on the deployment's dashboard instead",
        )

        balancing = spec.load_balancer
        for color in COLORS:
            self.target_groups[color] = elbv2.ApplicationTargetGroup(
                self,
                f"{color.capitalize()}Targets",
                vpc=vpc,
                port=port,
                protocol=elbv2.ApplicationProtocol.HTTP,
                target_type=elbv2.TargetType.INSTANCE,
                deregistration_delay=Duration.seconds(balancing.deregistration_delay),
                health_check=elbv2.HealthCheck(
                    path=spec.app.health_path,
                    port=str(port),
                    healthy_http_codes="200-399",
                    interval=Duration.seconds(balancing.health_check_interval),
                    timeout=Duration.seconds(balancing.health_check_timeout),
                    healthy_threshold_count=balancing.healthy_threshold,
                    unhealthy_threshold_count=balancing.unhealthy_threshold,
                ),
                targets=[
                    targets.InstanceIdTarget(instance.ref, port)
                    for instance in self.instances[color]
                ],
            )

        active = self.target_groups[spec.compute.active_color]
        if spec.access.certificate_arn:
            self.listener = self.load_balancer.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(spec.access.certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                default_target_groups=[active],
                open=False,
            )
            self.load_balancer.add_redirect(source_port=80, target_port=443)
        else:
            self.listener = self.load_balancer.add_listener(
                "Http",
                port=80,
                protocol=elbv2.ApplicationProtocol.HTTP,
                default_target_groups=[active],
                open=False,
            )
        standby = next(c for c in COLORS if c != spec.compute.active_color)
        elbv2.ApplicationListenerRule(
            self,
            "StandbyRule",
            listener=self.listener,
            priority=STANDBY_RULE_PRIORITY,
            conditions=[elbv2.ListenerCondition.http_header(STANDBY_HEADER, [standby_token])],
            target_groups=[self.target_groups[standby]],
        )
