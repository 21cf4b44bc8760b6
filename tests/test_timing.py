"""The provisioning estimate: the slowest chain of dependent resources decides."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from hivemind.timing import (
    CREATION_SECONDS,
    DEFAULT_CREATION_SECONDS,
    PathStep,
    ProvisioningEstimate,
    estimate_provisioning,
)

VPC = CREATION_SECONDS["AWS::EC2::VPC"]
SUBNET = CREATION_SECONDS["AWS::EC2::Subnet"]
NAT = CREATION_SECONDS["AWS::EC2::NatGateway"]
SG = CREATION_SECONDS["AWS::EC2::SecurityGroup"]
DB = CREATION_SECONDS["AWS::RDS::DBInstance"]
ROLE = CREATION_SECONDS["AWS::IAM::Role"]


def resource(resource_type: str, depends_on: Any = None, **properties: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {"Type": resource_type, "Properties": properties}
    if depends_on is not None:
        definition["DependsOn"] = depends_on
    return definition


def template(**resources: dict[str, Any]) -> dict[str, Any]:
    return {"Parameters": {"Env": {"Type": "String"}}, "Resources": resources}


def path_ids(estimate: ProvisioningEstimate) -> list[str]:
    return [step.logical_id for step in estimate.path]


def test_an_empty_template_takes_no_time() -> None:
    assert estimate_provisioning({}) == ProvisioningEstimate(total_seconds=0, path=())
    assert estimate_provisioning({"Resources": {}}).path == ()


def test_independent_resources_are_created_in_parallel() -> None:
    estimate = estimate_provisioning(
        template(Vpc=resource("AWS::EC2::VPC"), Role=resource("AWS::IAM::Role"))
    )

    assert estimate.total_seconds == ROLE
    assert estimate.path == (PathStep("Role", "AWS::IAM::Role", ROLE),)


@pytest.mark.parametrize(
    "reference",
    [
        {"Ref": "Vpc"},
        {"Fn::GetAtt": ["Vpc", "VpcId"]},
        {"Fn::GetAtt": "Vpc.VpcId"},
        {"Fn::Sub": "vpc-of-${Vpc}"},
        {"Fn::Sub": "${Vpc.CidrBlock}"},
        {"Fn::Sub": ["${Name}-${Vpc}", {"Name": "web"}]},
        {"Fn::Join": ["", ["prefix-", {"Ref": "Vpc"}]]},
    ],
    ids=["Ref", "GetAtt-list", "GetAtt-string", "Sub", "Sub-attribute", "Sub-list", "nested"],
)
def test_a_reference_in_the_properties_makes_a_resource_wait(reference: Any) -> None:
    estimate = estimate_provisioning(
        template(
            Vpc=resource("AWS::EC2::VPC"),
            Subnet=resource("AWS::EC2::Subnet", VpcId=reference),
        )
    )

    assert path_ids(estimate) == ["Vpc", "Subnet"]
    assert estimate.total_seconds == VPC + SUBNET


@pytest.mark.parametrize("depends_on", ["Vpc", ["Vpc"]], ids=["string", "list"])
def test_depends_on_makes_a_resource_wait(depends_on: Any) -> None:
    estimate = estimate_provisioning(
        template(Vpc=resource("AWS::EC2::VPC"), Nat=resource("AWS::EC2::NatGateway", depends_on))
    )

    assert path_ids(estimate) == ["Vpc", "Nat"]


def test_sub_ignores_pseudo_parameters_parameters_local_variables_and_escapes() -> None:
    sub = {
        "Fn::Sub": [
            "${AWS::Region}-${Env}-${Local}-${!Vpc}",
            {"Local": {"Fn::GetAtt": ["Role", "Arn"]}},
        ]
    }
    estimate = estimate_provisioning(
        template(
            Vpc=resource("AWS::EC2::VPC"),
            Role=resource("AWS::IAM::Role"),
            Local=resource("AWS::EC2::EIP"),
            Topic=resource("AWS::SNS::Topic", DisplayName=sub),
        )
    )

    # Only the Role is a dependency: it is used inside the variable map.
    assert path_ids(estimate) == ["Role", "Topic"]


def test_refs_to_parameters_and_pseudo_parameters_are_not_dependencies() -> None:
    estimate = estimate_provisioning(
        template(
            Vpc=resource("AWS::EC2::VPC", Tag={"Ref": "Env"}, Region={"Ref": "AWS::Region"}),
        )
    )

    assert path_ids(estimate) == ["Vpc"]


def test_the_critical_path_is_the_slowest_branch() -> None:
    estimate = estimate_provisioning(
        template(
            Vpc=resource("AWS::EC2::VPC"),
            PublicSubnet=resource("AWS::EC2::Subnet", VpcId={"Ref": "Vpc"}),
            Nat=resource("AWS::EC2::NatGateway", SubnetId={"Ref": "PublicSubnet"}),
            DbSecurityGroup=resource("AWS::EC2::SecurityGroup", VpcId={"Ref": "Vpc"}),
            Database=resource(
                "AWS::RDS::DBInstance",
                VPCSecurityGroups=[{"Fn::GetAtt": ["DbSecurityGroup", "GroupId"]}],
            ),
        )
    )

    assert estimate.path == (
        PathStep("Vpc", "AWS::EC2::VPC", VPC),
        PathStep("DbSecurityGroup", "AWS::EC2::SecurityGroup", SG),
        PathStep("Database", "AWS::RDS::DBInstance", DB),
    )
    assert estimate.total_seconds == VPC + SG + DB


def test_a_multi_az_database_takes_longer_than_a_single_az_one() -> None:
    def database_seconds(**properties: Any) -> int:
        return estimate_provisioning(
            template(Db=resource("AWS::RDS::DBInstance", **properties))
        ).total_seconds

    single_az = database_seconds(MultiAZ=False)
    assert single_az == database_seconds() == DB
    assert database_seconds(MultiAZ=True) > single_az
    assert database_seconds(MultiAZ="true") == database_seconds(MultiAZ=True)
    read_replica = CREATION_SECONDS["AWS::RDS::DBInstance (read replica)"]
    assert database_seconds(SourceDBInstanceIdentifier="primary") == read_replica


def test_an_unknown_resource_type_takes_the_default_time() -> None:
    estimate = estimate_provisioning(template(Thing=resource("Custom::Migration")))

    assert estimate.path == (PathStep("Thing", "Custom::Migration", DEFAULT_CREATION_SECONDS),)


def test_a_dependency_cycle_is_refused_with_the_resources_named() -> None:
    cyclic = template(
        Vpc=resource("AWS::EC2::VPC"),
        A=resource("AWS::EC2::SecurityGroup", VpcId={"Ref": "Vpc"}, Peer={"Ref": "B"}),
        B=resource("AWS::EC2::SecurityGroup", "C"),
        C=resource("AWS::EC2::SecurityGroup", Peer={"Fn::GetAtt": "A.GroupId"}),
    )

    with pytest.raises(ValueError, match="cycle") as raised:
        estimate_provisioning(cyclic)

    assert "A -> B -> C -> A" in str(raised.value)
    assert "Vpc" not in str(raised.value)


def test_equal_branches_are_broken_by_logical_id_on_every_run() -> None:
    resources = {
        name: resource("AWS::EC2::Subnet", VpcId={"Ref": "Vpc"}) for name in ("Zulu", "Alpha")
    }
    forwards = template(Vpc=resource("AWS::EC2::VPC"), **resources)
    backwards = template(**dict(reversed(list(resources.items()))), Vpc=resource("AWS::EC2::VPC"))

    estimates = {estimate_provisioning(t) for t in (forwards, backwards, forwards)}

    assert len(estimates) == 1
    assert path_ids(estimates.pop()) == ["Vpc", "Alpha"]


@pytest.fixture(scope="module")
def synthesized_database_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real CDK template: a VPC with one NAT gateway and Postgres in isolated subnets."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_rds as rds

    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out")))
    stack = cdk.Stack(app, "Data")
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        max_azs=2,
        nat_gateways=1,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
            ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        ],
    )
    rds.DatabaseInstance(
        stack,
        "Postgres",
        engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_16),
        instance_type=ec2.InstanceType.of(ec2.InstanceClass.T4G, ec2.InstanceSize.MICRO),
        vpc=vpc,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
    )
    assembly = app.synth()
    template_file = Path(assembly.directory) / cdk.Stack.of(vpc).template_file
    loaded: dict[str, Any] = json.loads(template_file.read_text())
    return loaded


def test_a_synthesized_database_stack_waits_for_the_vpc_then_the_database(
    synthesized_database_template: dict[str, Any],
) -> None:
    estimate = estimate_provisioning(synthesized_database_template)
    types = [step.resource_type for step in estimate.path]

    assert types[0] == "AWS::EC2::VPC"
    # The generated credentials are attached to the instance once it exists, so
    # the secret attachment is the only (5 s) step after the 600 s database.
    database = types.index("AWS::RDS::DBInstance")
    assert types[database + 1 :] == ["AWS::SecretsManager::SecretTargetAttachment"]
    assert estimate.total_seconds == sum(step.seconds for step in estimate.path)
    assert DB < estimate.total_seconds < DB + NAT
