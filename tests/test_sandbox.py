"""The sandbox's AWS side, on HiveMind's real templates: stacks reach CREATE_COMPLETE with
every output, deletions leave nothing behind, a failed resource rolls the stack back with
its reason, updates add and change resources (and roll back when they fail), injected
faults fail creations, updates and deletions on purpose, and the real CDK CLI deploys
into it. One in-process sandbox server serves every test here."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sandbox_harness import (
    KEY_PARAMETERS,
    SSH_PUBLIC_KEY,
    STANDBY_TOKEN,
    Clients,
    Synthesized,
    bootstrapped,
    destroy,
    events,
    in_process_sandbox,
    nothing_left,
    outputs,
    stack,
    synthesize_profile,
)

from hivemind import foundation, toolchain
from hivemind.sandbox import control, provisioning
from hivemind.sandbox.server import SandboxServer

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with in_process_sandbox() as server:
        yield server


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    toolchain.prepare_jsii()
    return synthesize_profile(tmp_path_factory.mktemp("production"), "production", "postgres", True)


@pytest.fixture(scope="session")
def stage1(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    toolchain.prepare_jsii()
    return synthesize_profile(
        tmp_path_factory.mktemp("stage-1"), "stage-1", "none", False, "shop-stageonezz"
    )


@pytest.fixture
def aws(sandbox: SandboxServer) -> Iterator[Clients]:
    """Clients on the sandbox; afterwards no fault stays armed and no stack stays behind."""
    clients = Clients(sandbox.url)
    info = control.SandboxInfo(sandbox.url, 0, sandbox.port)
    yield clients
    control.clear_faults(info)
    for summary in clients.cloudformation.list_stacks()["StackSummaries"]:
        if summary["StackStatus"] != "DELETE_COMPLETE":
            destroy(clients, summary["StackId"])


@pytest.fixture
def account(aws: Clients) -> Iterator[Clients]:
    """Clients on a sandbox account that looks CDK-bootstrapped: HiveMind synthesizes a
    template over CloudFormation's inline limit for the bootstrap bucket."""
    with bootstrapped(aws):
        yield aws


@pytest.fixture(scope="session")
def production_three(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The production template with a third instance (an update of `production`)."""
    toolchain.prepare_jsii()
    return synthesize_profile(
        tmp_path_factory.mktemp("production-3"),
        "production",
        "postgres",
        True,
        compute={"instance_type": "t3.small", "count": 3},
    )


def info_of(sandbox: SandboxServer) -> control.SandboxInfo:
    return control.SandboxInfo(sandbox.url, 0, sandbox.port)


def create(clients: Clients, name: str, template: Synthesized) -> str:
    return str(
        clients.cloudformation.create_stack(
            StackName=name, TemplateBody=template.body, Parameters=KEY_PARAMETERS
        )["StackId"]
    )


def test_every_resource_type_of_our_templates_is_implemented_by_the_sandbox(
    production: Synthesized, stage1: Synthesized
) -> None:
    missing = (production.resource_types | stage1.resource_types) - set(
        provisioning.implemented_types()
    )
    assert not missing


def test_production_stack_creates_with_every_output_and_deletes_to_nothing(
    account: Clients, production: Synthesized, caplog: pytest.LogCaptureFixture
) -> None:
    aws = account
    caplog.set_level(logging.WARNING, logger="moto")
    stack_id = create(aws, production.stack_name, production)

    assert stack(aws, stack_id)["StackStatus"] == "CREATE_COMPLETE"
    values = outputs(aws, stack_id)
    assert set(values) == set(production.template["Outputs"])
    assert all(value and value != "None" for value in values.values())
    assert not [r for r in caplog.records if "No Moto CloudFormation support" in r.getMessage()]

    # The database password is generated into the secret, and the attachment adds the
    # connection details; the database got the same password through {{resolve:...}}.
    secret = json.loads(
        aws.secretsmanager.get_secret_value(SecretId=values["DatabaseSecretArn"])["SecretString"]
    )
    assert secret["username"] == "hivemind"
    assert len(secret["password"]) == 30
    assert secret["host"] == values["DatabaseEndpoint"]
    assert (secret["engine"], secret["port"]) == ("postgres", 5432)
    databases = aws.rds.describe_db_instances()["DBInstances"]
    replica = next(d for d in databases if d.get("ReadReplicaSourceDBInstanceIdentifier"))
    assert replica["Endpoint"]["Address"] == values["DatabaseReplicaEndpoint"]
    assert aws.xray.get_group(GroupName=values["XRayGroup"])["Group"]["GroupName"]
    assert len(aws.cloudwatch.describe_alarms()["MetricAlarms"]) == 5
    instance_ids = values["BlueInstanceIds"].split(",")
    health = aws.elbv2.describe_target_health(TargetGroupArn=values["BlueTargetGroupArn"])
    assert sorted(t["Target"]["Id"] for t in health["TargetHealthDescriptions"]) == sorted(
        instance_ids
    )
    created = [e for e in events(aws, stack_id) if e["ResourceStatus"] == "CREATE_COMPLETE"]
    assert {e["LogicalResourceId"] for e in created} >= set(production.template["Resources"])

    # Like CloudFormation, deletion stops at a DB instance with deletion protection...
    aws.cloudformation.delete_stack(StackName=stack_id)
    failed = stack(aws, stack_id)
    assert failed["StackStatus"] == "DELETE_FAILED"
    reasons = {
        e["LogicalResourceId"]: e["ResourceStatusReason"]
        for e in events(aws, stack_id)
        if e["ResourceStatus"] == "DELETE_FAILED"
        and e["ResourceType"] != "AWS::CloudFormation::Stack"
    }
    assert list(reasons) == ["DatabaseInstanceAA8A5FDE"]
    assert "deletion protection" in reasons["DatabaseInstanceAA8A5FDE"]
    assert "DatabaseInstanceAA8A5FDE" in failed["StackStatusReason"]
    left = aws.cloudformation.list_stack_resources(StackName=stack_id)["StackResourceSummaries"]
    assert {r["LogicalResourceId"]: r["ResourceStatus"] for r in left}[
        "DatabaseInstanceAA8A5FDE"
    ] == "DELETE_FAILED"

    # ...and a second delete, once it is off, removes everything.
    assert destroy(aws, stack_id) == "DELETE_COMPLETE"
    assert nothing_left(aws) == {}
    # DeletionPolicy: Snapshot keeps a final snapshot, as on AWS.
    snapshots = aws.rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    assert secret["dbInstanceIdentifier"] in [s["DBInstanceIdentifier"] for s in snapshots]


def test_stage1_stack_creates_with_every_output_and_deletes_to_nothing(
    aws: Clients, stage1: Synthesized
) -> None:
    stack_id = create(aws, stage1.stack_name, stage1)

    assert stack(aws, stack_id)["StackStatus"] == "CREATE_COMPLETE"
    values = outputs(aws, stack_id)
    assert set(values) == set(stage1.template["Outputs"])
    instance = aws.ec2.describe_instances(InstanceIds=[values["BlueInstanceIds"]])
    launched = instance["Reservations"][0]["Instances"][0]
    assert launched["InstanceType"] == "t3.small"
    assert launched["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")
    assert launched["MetadataOptions"]["HttpTokens"] == "required"

    aws.cloudformation.delete_stack(StackName=stack_id)
    assert stack(aws, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert nothing_left(aws) == {}


def test_a_resource_that_fails_to_create_rolls_the_stack_back_with_its_reason(
    account: Clients, sandbox: SandboxServer, production: Synthesized
) -> None:
    aws = account
    control.add_fault(info_of(sandbox), "AWS::RDS::DBInstance", on="create", times=1)

    stack_id = create(aws, production.stack_name, production)

    described = stack(aws, stack_id)
    assert described["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "Outputs" not in described
    failures = [e for e in events(aws, stack_id) if e["ResourceStatus"] == "CREATE_FAILED"]
    assert [(e["LogicalResourceId"], e["ResourceType"]) for e in failures] == [
        ("DatabaseInstanceAA8A5FDE", "AWS::RDS::DBInstance")
    ]
    assert "Fault injected by the HiveMind sandbox" in failures[0]["ResourceStatusReason"]
    rollback = next(
        e for e in events(aws, stack_id) if e["ResourceStatus"] == "ROLLBACK_IN_PROGRESS"
    )
    assert "[DatabaseInstanceAA8A5FDE]" in rollback["ResourceStatusReason"]
    assert nothing_left(aws) == {"stacks": [production.stack_name]}
    assert control.faults(info_of(sandbox)) == []  # used up

    # A stack left in ROLLBACK_COMPLETE is deleted, then the same stack creates.
    aws.cloudformation.delete_stack(StackName=stack_id)
    retry = create(aws, production.stack_name, production)
    assert stack(aws, retry)["StackStatus"] == "CREATE_COMPLETE"
    assert destroy(aws, retry) == "DELETE_COMPLETE"
    assert nothing_left(aws) == {}


def test_an_injected_delete_fault_fails_the_delete_and_a_second_delete_completes(
    aws: Clients, sandbox: SandboxServer, stage1: Synthesized
) -> None:
    stack_id = create(aws, stage1.stack_name, stage1)
    instance_id = outputs(aws, stack_id)["BlueInstanceIds"]
    control.add_fault(info_of(sandbox), "AWS::EC2::Instance", on="delete", times=1)

    aws.cloudformation.delete_stack(StackName=stack_id)

    described = stack(aws, stack_id)
    assert described["StackStatus"] == "DELETE_FAILED"
    assert "WebBlue1D8CD25BC" in described["StackStatusReason"]
    failed = [
        e
        for e in events(aws, stack_id)
        if e["ResourceStatus"] == "DELETE_FAILED" and e["LogicalResourceId"] == "WebBlue1D8CD25BC"
    ]
    assert "Fault injected by the HiveMind sandbox" in failed[0]["ResourceStatusReason"]
    # What the instance needs is still there; what nothing else needs is gone.
    state = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    assert state["Instances"][0]["State"]["Name"] == "running"
    remaining = {
        r["LogicalResourceId"]
        for r in aws.cloudformation.list_stack_resources(StackName=stack_id)[
            "StackResourceSummaries"
        ]
    }
    assert {"WebBlue1D8CD25BC", "NetworkVpc7FB7348F", "WebLaunchTemplate2DE16FC2"} <= remaining
    assert "MonitoringDashboard0C3675C6" not in remaining

    aws.cloudformation.delete_stack(StackName=stack_id)
    assert stack(aws, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert nothing_left(aws) == {}


def test_an_update_adds_what_is_new_and_changes_the_rest_in_place(
    account: Clients, production: Synthesized, production_three: Synthesized
) -> None:
    aws = account
    stack_id = create(aws, production.stack_name, production)
    before = outputs(aws, stack_id)

    aws.cloudformation.update_stack(
        StackName=stack_id, TemplateBody=production_three.body, Parameters=KEY_PARAMETERS
    )

    happened = events(aws, stack_id)
    failed = [
        (e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason"))
        for e in happened
        if e["ResourceStatus"] in ("CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED")
    ]
    assert stack(aws, stack_id)["StackStatus"] == "UPDATE_COMPLETE", failed
    after = outputs(aws, stack_id)
    instances = after["BlueInstanceIds"].split(",")
    assert len(instances) == 3 and set(before["BlueInstanceIds"].split(",")) < set(instances)
    for kept in ("VpcId", "LoadBalancerArn", "DatabaseEndpoint", "DatabaseSecretArn"):
        assert after[kept] == before[kept]
    health = aws.elbv2.describe_target_health(TargetGroupArn=after["BlueTargetGroupArn"])
    assert len(health["TargetHealthDescriptions"]) == 3
    statuses = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in happened]
    assert ("WebBlueTargetsC659CFDD", "UPDATE_COMPLETE") in statuses
    assert failed == []

    assert destroy(aws, stack_id) == "DELETE_COMPLETE"
    assert nothing_left(aws) == {}


def test_an_update_that_fails_rolls_back_to_the_stack_as_it_was(
    account: Clients, sandbox: SandboxServer, production: Synthesized, production_three: Synthesized
) -> None:
    aws = account
    stack_id = create(aws, production.stack_name, production)
    before = outputs(aws, stack_id)
    control.add_fault(info_of(sandbox), "AWS::EC2::Instance", on="create", times=1)

    aws.cloudformation.update_stack(
        StackName=stack_id, TemplateBody=production_three.body, Parameters=KEY_PARAMETERS
    )

    assert stack(aws, stack_id)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    history = events(aws, stack_id)
    failed = [e for e in history if e["ResourceStatus"] == "CREATE_FAILED"]
    assert [e["ResourceType"] for e in failed] == ["AWS::EC2::Instance"]
    rollback = next(e for e in history if e["ResourceStatus"] == "UPDATE_ROLLBACK_IN_PROGRESS")
    assert (
        f"failed to create: [{failed[0]['LogicalResourceId']}]" in rollback["ResourceStatusReason"]
    )
    assert outputs(aws, stack_id) == before
    health = aws.elbv2.describe_target_health(TargetGroupArn=before["BlueTargetGroupArn"])
    assert len(health["TargetHealthDescriptions"]) == 2
    running = [
        i["InstanceId"]
        for r in aws.ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    ]
    assert sorted(running) == sorted(before["BlueInstanceIds"].split(","))

    assert destroy(aws, stack_id) == "DELETE_COMPLETE"
    assert nothing_left(aws) == {}


def test_a_rollback_that_cannot_delete_is_continued(
    account: Clients, sandbox: SandboxServer, production: Synthesized, production_three: Synthesized
) -> None:
    aws = account
    stack_id = create(aws, production.stack_name, production)
    info = info_of(sandbox)
    # The third instance gets created, then the target group fails to take it, then the
    # rollback cannot delete the instance.
    control.add_fault(info, "AWS::ElasticLoadBalancingV2::TargetGroup", on="update")
    control.add_fault(info, "AWS::EC2::Instance", on="delete")

    aws.cloudformation.update_stack(
        StackName=stack_id, TemplateBody=production_three.body, Parameters=KEY_PARAMETERS
    )

    described = stack(aws, stack_id)
    assert described["StackStatus"] == "UPDATE_ROLLBACK_FAILED"
    assert "failed to roll back: [WebBlue3" in described["StackStatusReason"]

    aws.cloudformation.continue_update_rollback(StackName=stack_id)

    assert stack(aws, stack_id)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert len(outputs(aws, stack_id)["BlueInstanceIds"].split(",")) == 2
    assert destroy(aws, stack_id) == "DELETE_COMPLETE"
    assert nothing_left(aws) == {}


def test_an_inline_template_over_cloudformations_limit_is_refused(
    aws: Clients, production: Synthesized
) -> None:
    pretty = json.dumps(production.template, indent=2)
    assert len(pretty.encode()) > 51_200

    with pytest.raises(ClientError, match="less than or equal to 51200"):
        aws.cloudformation.create_stack(
            StackName="big", TemplateBody=pretty, Parameters=KEY_PARAMETERS
        )


TRUSTS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": None}}],
}


def _role(aws: Clients, name: str, service: str) -> str:
    trust = json.loads(json.dumps(TRUSTS))
    trust["Statement"][0]["Principal"]["Service"] = service
    return str(
        aws.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
            "Arn"
        ]
    )


def test_a_service_role_must_exist_and_trust_cloudformation_as_on_aws(aws: Clients) -> None:
    # What the CDK CLI passed in an account never bootstrapped (BootstraplessSynthesizer
    # still named the bootstrap's execution role): AWS refuses it before doing anything.
    missing = "arn:aws:iam::123456789012:role/cdk-hnb659fds-cfn-exec-role-123456789012-us-east-1"
    ec2_role = _role(aws, "trusts-ec2", "ec2.amazonaws.com")
    body = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})
    try:
        for role_arn in (missing, ec2_role):
            for call, arguments in (
                (aws.cloudformation.create_stack, {"StackName": "with-role"}),
                (
                    aws.cloudformation.create_change_set,
                    {"StackName": "with-role", "ChangeSetName": "c", "ChangeSetType": "CREATE"},
                ),
            ):
                with pytest.raises(ClientError) as refused:
                    call(TemplateBody=body, RoleARN=role_arn, **arguments)
                error = refused.value.response["Error"]
                assert error["Code"] == "ValidationError"
                assert error["Message"] == f"Role {role_arn} is invalid or cannot be assumed"
        assert not aws.cloudformation.describe_stacks()["Stacks"]  # nothing was started

        # A role that trusts CloudFormation is taken, for the stack's life.
        cloudformation_role = _role(aws, "trusts-cloudformation", "cloudformation.amazonaws.com")
        stack_id = aws.cloudformation.create_stack(
            StackName="with-role", TemplateBody=body, RoleARN=cloudformation_role
        )["StackId"]
        assert stack(aws, stack_id)["RoleARN"] == cloudformation_role
        with pytest.raises(ClientError, match="is invalid or cannot be assumed"):
            aws.cloudformation.delete_stack(StackName=stack_id, RoleARN=missing)
        aws.cloudformation.delete_stack(StackName=stack_id, RoleARN=cloudformation_role)
        assert stack(aws, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    finally:
        for name in ("trusts-ec2", "trusts-cloudformation"):
            with contextlib.suppress(ClientError):
                aws.iam.delete_role(RoleName=name)


def test_a_roles_permissions_boundary_must_exist_as_iam_requires(aws: Clients) -> None:
    boundary = "arn:aws:iam::123456789012:policy/hivemind-boundary"
    trust = json.loads(json.dumps(TRUSTS))
    trust["Statement"][0]["Principal"]["Service"] = "ec2.amazonaws.com"
    role = {
        "Type": "AWS::IAM::Role",
        "Properties": {"AssumeRolePolicyDocument": trust, "PermissionsBoundary": boundary},
    }
    body = json.dumps({"Resources": {"Role": role}})
    aws.iam.delete_policy(PolicyArn=boundary)  # in_process_sandbox made it: as if never
    stack_id = aws.cloudformation.create_stack(StackName="unbounded", TemplateBody=body)["StackId"]
    failed = [e for e in events(aws, stack_id) if e["ResourceStatus"] == "CREATE_FAILED"]
    assert [e["LogicalResourceId"] for e in failed] == ["Role"]
    assert (
        f"Scope ARN: {boundary} does not exist or is not attachable."
        in failed[0]["ResourceStatusReason"]
    )
    aws.cloudformation.delete_stack(StackName=stack_id)

    created = aws.iam.create_policy(
        PolicyName="hivemind-boundary", PolicyDocument=json.dumps(foundation.BOUNDARY)
    )["Policy"]["Arn"]
    assert created == boundary
    stack_id = aws.cloudformation.create_stack(StackName="bounded", TemplateBody=body)["StackId"]
    assert stack(aws, stack_id)["StackStatus"] == "CREATE_COMPLETE"
    name = aws.cloudformation.describe_stack_resource(StackName=stack_id, LogicalResourceId="Role")[
        "StackResourceDetail"
    ]["PhysicalResourceId"]
    assert aws.iam.get_role(RoleName=name)["Role"]["PermissionsBoundary"] == {
        "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
        "PermissionsBoundaryArn": boundary,
    }
    aws.cloudformation.delete_stack(StackName=stack_id)


def test_updating_a_role_keeps_the_policies_other_resources_put_on_it(aws: Clients) -> None:
    # As the update that gave existing deployments' roles their boundary: IAM leaves a
    # role's inline policies alone, so the AWS::IAM::Policy resource can still be
    # deleted with the stack afterwards.
    trust = json.loads(json.dumps(TRUSTS))
    trust["Statement"][0]["Principal"]["Service"] = "ec2.amazonaws.com"
    statement = {"Effect": "Allow", "Action": "ec2:DescribeTags", "Resource": "*"}
    template: dict[str, Any] = {
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": trust}},
            "Policy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyName": "agent",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": [statement]},
                    "Roles": [{"Ref": "Role"}],
                },
            },
        }
    }
    stack_id = aws.cloudformation.create_stack(
        StackName="role-update", TemplateBody=json.dumps(template)
    )["StackId"]
    template["Resources"]["Role"]["Properties"]["PermissionsBoundary"] = (
        "arn:aws:iam::123456789012:policy/hivemind-boundary"
    )
    aws.cloudformation.update_stack(StackName=stack_id, TemplateBody=json.dumps(template))
    assert stack(aws, stack_id)["StackStatus"] == "UPDATE_COMPLETE"
    role = aws.cloudformation.describe_stack_resource(StackName=stack_id, LogicalResourceId="Role")[
        "StackResourceDetail"
    ]["PhysicalResourceId"]
    assert aws.iam.list_role_policies(RoleName=role)["PolicyNames"] == ["agent"]
    aws.cloudformation.delete_stack(StackName=stack_id)
    assert stack(aws, stack_id)["StackStatus"] == "DELETE_COMPLETE"


def test_sts_assumes_only_a_role_that_exists(aws: Clients) -> None:
    missing = "arn:aws:iam::123456789012:role/cdk-hnb659fds-deploy-role-123456789012-us-east-1"
    with pytest.raises(ClientError) as refused:
        aws.sts.assume_role(RoleArn=missing, RoleSessionName="cdk")
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert (
        f"is not authorized to perform: sts:AssumeRole on resource: {missing}" in (error["Message"])
    )
    existing = _role(aws, "deployer", "cloudformation.amazonaws.com")
    try:
        assumed = aws.sts.assume_role(RoleArn=existing, RoleSessionName="cdk")
        assert assumed["Credentials"]["AccessKeyId"]
    finally:
        aws.iam.delete_role(RoleName="deployer")


def test_a_template_url_on_the_sandbox_endpoint_is_read_from_its_s3(
    account: Clients, production: Synthesized
) -> None:
    aws = account
    aws.s3.create_bucket(
        Bucket="templates", CreateBucketConfiguration={"LocationConstraint": aws.region}
    )
    aws.s3.put_object(Bucket="templates", Key="big.yaml", Body=production.body.encode())

    stack_id = aws.cloudformation.create_stack(
        StackName="from-url",
        TemplateURL=f"{aws.url}/templates/big.yaml",
        Parameters=KEY_PARAMETERS,
    )["StackId"]

    assert stack(aws, stack_id)["StackStatus"] == "CREATE_COMPLETE"
    assert destroy(aws, stack_id) == "DELETE_COMPLETE"
    aws.s3.delete_object(Bucket="templates", Key="big.yaml")
    aws.s3.delete_bucket(Bucket="templates")


@pytest.mark.parametrize("resource_type", ["AWS::Made::Up", "Custom::NeedsALambda"])
def test_a_template_with_a_type_the_sandbox_cannot_create_is_refused(
    aws: Clients, resource_type: str
) -> None:
    template = {"Resources": {"Thing": {"Type": resource_type, "Properties": {}}}}

    with pytest.raises(ClientError, match=rf"Unrecognized resource types: \[{resource_type}\]"):
        aws.cloudformation.create_stack(StackName="odd", TemplateBody=json.dumps(template))
    assert nothing_left(aws) == {}


def test_a_json_body_is_read_as_json_and_a_yaml_body_as_yaml(
    aws: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.cloudformation.models as moto_models

    yaml_reads: list[str] = []
    yaml_load = moto_models.yaml.load

    def counted(text: str, *args: Any, **kwargs: Any) -> Any:
        yaml_reads.append(text)
        return yaml_load(text, *args, **kwargs)

    monkeypatch.setattr(moto_models.yaml, "load", counted)
    properties = {"Name": "/sandbox/as-json", "Type": "String", "Value": "json"}
    as_json = {
        "Resources": {"P": {"Type": "AWS::SSM::Parameter", "Properties": properties}},
        "Outputs": {"Name": {"Value": {"Ref": "P"}}},
    }
    as_yaml = (
        "Resources:\n  P:\n    Type: AWS::SSM::Parameter\n    Properties:\n"
        "      Name: /sandbox/as-yaml\n      Type: String\n      Value: yaml\n"
        "Outputs:\n  Name:\n    Value: !Ref P\n"
    )
    json_id = aws.cloudformation.create_stack(
        StackName="as-json", TemplateBody=json.dumps(as_json)
    )["StackId"]
    assert yaml_reads == []  # CDK's JSON never goes through the (slow) YAML reader
    yaml_id = aws.cloudformation.create_stack(StackName="as-yaml", TemplateBody=as_yaml)["StackId"]
    assert yaml_reads  # a YAML body, short-form tags included, still is YAML

    for stack_id, value in ((json_id, "json"), (yaml_id, "yaml")):
        described = stack(aws, stack_id)
        assert described["StackStatus"] == "CREATE_COMPLETE"
        name = described["Outputs"][0]["OutputValue"]
        assert name == f"/sandbox/as-{value}"
        assert aws.ssm.get_parameter(Name=name)["Parameter"]["Value"] == value
        aws.cloudformation.delete_stack(StackName=stack_id)


def test_dynamic_references_resolve_when_a_resource_is_created(aws: Clients) -> None:
    template = {
        "Resources": {
            "Secret": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {"SecretString": '{"password": "s3cret"}'},
            },
            "Copy": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {
                    "Name": "/sandbox/copy",
                    "Type": "String",
                    "Value": {
                        "Fn::Join": [
                            "",
                            [
                                "{{resolve:secretsmanager:",
                                {"Ref": "Secret"},
                                ":SecretString:password::}}",
                            ],
                        ]
                    },
                },
            },
        }
    }
    stack_id = aws.cloudformation.create_stack(
        StackName="references", TemplateBody=json.dumps(template)
    )["StackId"]

    assert stack(aws, stack_id)["StackStatus"] == "CREATE_COMPLETE"
    assert aws.ssm.get_parameter(Name="/sandbox/copy")["Parameter"]["Value"] == "s3cret"
    aws.cloudformation.delete_stack(StackName=stack_id)


def test_xray_groups_and_sampling_rules_are_served(aws: Clients) -> None:
    xray = aws.xray
    group = xray.create_group(GroupName="checkout", FilterExpression='service("shop")')["Group"]
    xray.create_sampling_rule(
        SamplingRule={
            "RuleName": "checkout",
            "Priority": 10,
            "FixedRate": 0.1,
            "ReservoirSize": 1,
            "ServiceName": "shop",
            "ServiceType": "*",
            "Host": "*",
            "HTTPMethod": "*",
            "URLPath": "*",
            "ResourceARN": "*",
            "Version": 1,
        }
    )

    assert [g["GroupName"] for g in xray.get_groups()["Groups"]] == ["Default", "checkout"]
    assert xray.get_group(GroupARN=group["GroupARN"])["Group"]["FilterExpression"] == (
        'service("shop")'
    )
    rules = [
        r["SamplingRule"]["RuleName"] for r in xray.get_sampling_rules()["SamplingRuleRecords"]
    ]
    assert rules == ["checkout", "Default"]
    with pytest.raises(ClientError, match="already exists"):
        xray.create_group(GroupName="checkout")

    xray.delete_group(GroupName="checkout")
    xray.delete_sampling_rule(RuleName="checkout")
    assert nothing_left(aws) == {}


def test_faults_are_armed_listed_and_cleared(sandbox: SandboxServer) -> None:
    info = info_of(sandbox)
    control.add_fault(info, "AWS::RDS::*", on="delete", times=2)

    assert control.faults(info) == [
        {
            "resource_type": "AWS::RDS::*",
            "on": "delete",
            "remaining": 2,
            "message": "Fault injected by the HiveMind sandbox: delete of AWS::RDS::* fails",
            "match": "",
            "code": "",
        }
    ]
    with pytest.raises(control.SandboxError, match="on must be one of create, update, del"):
        control.add_fault(info, "AWS::RDS::DBInstance", on="replace")
    control.clear_faults(info)
    assert control.faults(info) == []


def test_the_cdk_cli_deploys_into_the_sandbox(
    aws: Clients,
    sandbox: SandboxServer,
    stage1: Synthesized,
    production: Synthesized,
    tmp_path: Path,
) -> None:
    node = toolchain.find_node()
    assert node is not None, "no Node 20+: run ./scripts/bootstrap"
    assert toolchain.cdk_installed_version(node) == toolchain.CDK_CLI_VERSION, (
        "the pinned CDK CLI is missing: run ./scripts/bootstrap"
    )
    env = control.child_environment(info_of(sandbox), aws.region, base=toolchain.node_env(node))

    def cdk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            toolchain.cdk_command(node, *args),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def deploy(template: Synthesized) -> dict[str, str]:
        outputs_file = tmp_path / f"{template.stack_name}.json"
        result = cdk(
            "deploy",
            "--app",
            str(template.cdk_out),
            "--require-approval",
            "never",
            "--outputs-file",
            str(outputs_file),
            f"--parameters=SshPublicKey={SSH_PUBLIC_KEY}",
            f"--parameters=StandbyToken={STANDBY_TOKEN}",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return dict(json.loads(outputs_file.read_text())[template.stack_name])

    # A bootstrapless template deploys into a sandbox that was never bootstrapped.
    assert aws.cloudformation.describe_stacks()["Stacks"] == []
    assert set(deploy(stage1)) == set(stage1.template["Outputs"])
    assert stack(aws, stage1.stack_name)["StackStatus"] == "CREATE_COMPLETE"

    # A template over the inline limit (HiveMind then synthesizes for the bootstrap
    # bucket) needs `cdk bootstrap`: it works against the sandbox, and deploys still do.
    bootstrap = cdk("bootstrap", f"aws://123456789012/{aws.region}")
    assert bootstrap.returncode == 0, bootstrap.stderr[-3000:]
    assert set(deploy(production)) == set(production.template["Outputs"])

    for name in (stage1.stack_name, production.stack_name):
        assert destroy(aws, name) == "DELETE_COMPLETE"
    assert destroy(aws, "CDKToolkit") == "DELETE_COMPLETE"
    assert nothing_left(aws) == {}
