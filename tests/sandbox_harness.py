"""What the sandbox tests share: HiveMind's real templates, boto3 clients on a sandbox
endpoint, and an inventory of everything a stack could leave behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from harness import make_spec

from hivemind import foundation
from hivemind.sandbox import server
from hivemind.synth import synthesize

ACCOUNT_ID = "123456789012"  # moto's default account, the sandbox's
DEPLOYMENT_ID = "shop-abcdefghij"
REGION = "eu-west-1"  # make_spec's region: the templates are region-agnostic anyway
# HiveMind's templates take the deployment's SSH public key as a parameter.
SSH_PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm4lFOnD6MWwBpmHuO0mmb1B6mZtKxxTfmJYWdKMbGR test"
)
STANDBY_TOKEN = "t" * 40
KEY_PARAMETERS = [
    {"ParameterKey": "SshPublicKey", "ParameterValue": SSH_PUBLIC_KEY},
    {"ParameterKey": "StandbyToken", "ParameterValue": STANDBY_TOKEN},
]


@contextmanager
def in_process_sandbox() -> Iterator[server.SandboxServer]:
    """A sandbox served from this test process as a new account, set up for HiveMind as
    its first deploy leaves one (the hivemind-boundary policy its stacks' roles name).
    moto keeps its resources per process, so what an earlier module of this worker left
    is forgotten before the server starts, and what this one leaves, after it stops."""
    server.forget_all()
    running = server.start_server()
    foundation.ensure(Clients(running.url).iam, ACCOUNT_ID, lambda _q: True, lambda _s: None)
    try:
        yield running
    finally:
        running.stop()
        server.forget_all()


@dataclass(frozen=True)
class Synthesized:
    """A template HiveMind synthesized: its cdk.out folder, stack name and body."""

    out_dir: Path
    stack_name: str
    body: str

    @property
    def cdk_out(self) -> Path:
        return self.out_dir / "cdk.out"

    @property
    def template(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def resource_types(self) -> set[str]:
        return {r["Type"] for r in self.template["Resources"].values()}


def synthesize_profile(
    out_dir: Path,
    profile: str,
    engine: str,
    xray: bool,
    deployment_id: str = DEPLOYMENT_ID,
    **changes: Any,
) -> Synthesized:
    spec = make_spec(profile, engine, xray, **changes)
    result = synthesize(spec, deployment_id, out_dir, use_cache=False)
    body = (out_dir / result.template_file).read_text(encoding="utf-8")
    return Synthesized(out_dir, result.stack_name, body)


class Clients:
    """boto3 clients on one sandbox endpoint, created on first use."""

    def __init__(
        self, url: str, region: str = REGION, credentials: tuple[str, str] = ("testing", "testing")
    ) -> None:
        self.url = url
        self.region = region
        self.credentials = credentials
        self._clients: dict[str, Any] = {}

    @classmethod
    def of(cls, info: Any, region: str = REGION) -> Clients:
        """Clients of a sandbox daemon, with its own access key (`control.status`)."""
        return cls(info.url, region, (info.access_key_id, info.secret_access_key))

    def __getattr__(self, service: str) -> Any:
        if service.startswith("_"):
            raise AttributeError(service)
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.url,
                region_name=self.region,
                aws_access_key_id=self.credentials[0],
                aws_secret_access_key=self.credentials[1],
            )
        return self._clients[service]


BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"


@contextmanager
def bootstrapped(clients: Clients) -> Iterator[None]:
    """The account looks CDK-bootstrapped while inside: a template synthesized for the
    bootstrap bucket (over the inline limit) reads the bootstrap version from SSM."""
    clients.ssm.put_parameter(Name=BOOTSTRAP_VERSION_PARAMETER, Value="30", Type="String")
    try:
        yield
    finally:
        clients.ssm.delete_parameter(Name=BOOTSTRAP_VERSION_PARAMETER)


def stack(clients: Clients, name_or_id: str) -> dict[str, Any]:
    return dict(clients.cloudformation.describe_stacks(StackName=name_or_id)["Stacks"][0])


def outputs(clients: Clients, name_or_id: str) -> dict[str, str]:
    described = stack(clients, name_or_id)
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def events(clients: Clients, stack_id: str) -> list[dict[str, Any]]:
    """The stack's events, oldest first."""
    found = clients.cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
    return list(reversed(found))


def destroy(clients: Clients, name_or_id: str) -> str:
    """Delete a stack the way `hivemind destroy` must (deletion protection off first);
    returns the status it ends in."""
    stack_id = stack(clients, name_or_id)["StackId"]  # a deleted stack is found by id only
    rds = clients.rds
    for database in rds.describe_db_instances()["DBInstances"]:
        if database["DeletionProtection"]:
            rds.modify_db_instance(
                DBInstanceIdentifier=database["DBInstanceIdentifier"],
                DeletionProtection=False,
                ApplyImmediately=True,
            )
    clients.cloudformation.delete_stack(StackName=stack_id)
    return str(stack(clients, stack_id)["StackStatus"])


def leftovers(clients: Clients) -> dict[str, list[str]]:
    """Everything a HiveMind stack creates that still exists in the region (the default
    VPC aside), by kind; empty lists when a deletion left nothing behind."""
    ec2 = clients.ec2
    vpcs = [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]]
    in_vpcs = [{"Name": "vpc-id", "Values": vpcs}] if vpcs else None

    def in_our_vpcs(call: Any, key: str, id_key: str) -> list[str]:
        if not in_vpcs:
            return []
        return [item[id_key] for item in call(Filters=in_vpcs)[key]]

    instances = [
        i["InstanceId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    iam = clients.iam
    return {
        "stacks": [
            s["StackName"]
            for s in clients.cloudformation.list_stacks()["StackSummaries"]
            if s["StackStatus"] != "DELETE_COMPLETE"
        ],
        "vpcs": vpcs,
        "subnets": in_our_vpcs(ec2.describe_subnets, "Subnets", "SubnetId"),
        "route tables": in_our_vpcs(ec2.describe_route_tables, "RouteTables", "RouteTableId"),
        "security groups": in_our_vpcs(ec2.describe_security_groups, "SecurityGroups", "GroupId"),
        "internet gateways": [
            g["InternetGatewayId"] for g in ec2.describe_internet_gateways()["InternetGateways"]
        ],
        "nat gateways": [
            n["NatGatewayId"]
            for n in ec2.describe_nat_gateways()["NatGateways"]
            if n["State"] != "deleted"
        ],
        "elastic ips": [a["PublicIp"] for a in ec2.describe_addresses()["Addresses"]],
        "network interfaces": [
            n["NetworkInterfaceId"] for n in ec2.describe_network_interfaces()["NetworkInterfaces"]
        ],
        "instances": instances,
        "launch templates": [
            t["LaunchTemplateId"] for t in ec2.describe_launch_templates()["LaunchTemplates"]
        ],
        "flow logs": [f["FlowLogId"] for f in ec2.describe_flow_logs()["FlowLogs"]],
        "load balancers": [
            lb["LoadBalancerArn"] for lb in clients.elbv2.describe_load_balancers()["LoadBalancers"]
        ],
        "target groups": [
            tg["TargetGroupArn"] for tg in clients.elbv2.describe_target_groups()["TargetGroups"]
        ],
        "db instances": [
            d["DBInstanceIdentifier"] for d in clients.rds.describe_db_instances()["DBInstances"]
        ],
        "db subnet groups": [
            g["DBSubnetGroupName"]
            for g in clients.rds.describe_db_subnet_groups()["DBSubnetGroups"]
        ],
        "secrets": [s["ARN"] for s in clients.secretsmanager.list_secrets()["SecretList"]],
        "alarms": [a["AlarmName"] for a in clients.cloudwatch.describe_alarms()["MetricAlarms"]],
        "dashboards": [
            d["DashboardName"] for d in clients.cloudwatch.list_dashboards()["DashboardEntries"]
        ],
        "log groups": [g["logGroupName"] for g in clients.logs.describe_log_groups()["logGroups"]],
        "x-ray groups": [
            g["GroupName"]
            for g in clients.xray.get_groups()["Groups"]
            if g["GroupName"] != "Default"
        ],
        "x-ray sampling rules": [
            r["SamplingRule"]["RuleName"]
            for r in clients.xray.get_sampling_rules()["SamplingRuleRecords"]
            if r["SamplingRule"]["RuleName"] != "Default"
        ],
        "iam roles": [r["RoleName"] for r in iam.list_roles()["Roles"]],
        "instance profiles": [
            p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]
        ],
    }


def nothing_left(clients: Clients) -> dict[str, list[str]]:
    """The kinds of resource of which something is left (empty: nothing is)."""
    return {kind: found for kind, found in leftovers(clients).items() if found}
