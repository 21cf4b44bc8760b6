"""The sandbox's change sets say what CloudFormation's say, and executing one does what
it said. Each modification carries `Replacement`, `Scope` and `Details`, from
CloudFormation's own rules for the resource type (its registry schema: what always
replaces, what replaces under conditions) — the rules the sandbox's updates follow.

On HiveMind's stage-1 to production upgrade the database is modified in place and keeps
its data, though the change set calls it Replacement "Conditional", as AWS does for
MultiAZ and BackupRetentionPeriod; the read replica (a real one), NAT gateways,
private subnets and the connect endpoint are added; the stage-1 instance, moved to a
private subnet, is replaced. A new DB subnet group name replaces the database, a new
engine may; a NoEcho parameter's new value modifies what uses it (Dynamic)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sandbox_harness import (
    KEY_PARAMETERS,
    SSH_PUBLIC_KEY,
    Clients,
    Synthesized,
    destroy,
    events,
    in_process_sandbox,
    outputs,
    stack,
    synthesize_profile,
)

from hivemind import toolchain
from hivemind.sandbox import databases, provisioning
from hivemind.sandbox.cloudformation import dependencies
from hivemind.sandbox.server import SandboxServer

pytestmark = pytest.mark.sandbox

DATABASE = "DatabaseInstanceAA8A5FDE"
REPLICA = "DatabaseReadReplicaFA1999F7"
SUBNET_GROUP = "DatabaseInstanceSubnetGroupDE121BB6"
STAGE1_INSTANCE = "WebBlue1D8CD25BC"
STANDBY_RULE = "WebStandbyRule50794BEC"
NEW_TOKEN = "n" * 40

# What the CloudFormation resource reference says of properties of the types HiveMind's
# stacks use ("Update requires: Replacement" is Always; the properties whose change
# replaces only under conditions are Conditionally; "No interruption" and "Some
# interruptions" are Never).
DOCUMENTED: dict[str, dict[str, provisioning.Recreation]] = {
    "AWS::RDS::DBInstance": {
        "DBSubnetGroupName": "Always",
        "DBInstanceIdentifier": "Always",
        "DBName": "Always",
        "MasterUsername": "Always",
        "StorageEncrypted": "Always",
        "KmsKeyId": "Always",
        "Engine": "Conditionally",
        "AvailabilityZone": "Conditionally",
        "SourceDBInstanceIdentifier": "Conditionally",
        "MultiAZ": "Conditionally",
        "BackupRetentionPeriod": "Conditionally",
        "DeletionProtection": "Never",
        "DeleteAutomatedBackups": "Never",
        "DBInstanceClass": "Never",
        "AllocatedStorage": "Never",
        "MasterUserPassword": "Never",
        "Port": "Never",
    },
    "AWS::RDS::DBSubnetGroup": {
        "DBSubnetGroupName": "Always",
        "DBSubnetGroupDescription": "Never",
        "SubnetIds": "Never",
    },
    "AWS::EC2::Instance": {
        "SubnetId": "Always",
        "LaunchTemplate": "Always",
        "ImageId": "Always",
        "KeyName": "Always",
        "AvailabilityZone": "Always",
        "PrivateIpAddress": "Always",
        "InstanceType": "Conditionally",
        "UserData": "Conditionally",
        "SecurityGroupIds": "Conditionally",
        "Monitoring": "Never",
        "IamInstanceProfile": "Never",
        "Tags": "Never",
    },
    "AWS::EC2::Subnet": {
        "VpcId": "Always",
        "CidrBlock": "Always",
        "AvailabilityZone": "Always",
        "MapPublicIpOnLaunch": "Never",
    },
    "AWS::EC2::SecurityGroup": {
        "GroupDescription": "Always",
        "VpcId": "Always",
        "GroupName": "Always",
        "SecurityGroupIngress": "Never",
        "SecurityGroupEgress": "Never",
    },
    "AWS::EC2::InstanceConnectEndpoint": {
        "SubnetId": "Always",
        "SecurityGroupIds": "Always",
        "PreserveClientIp": "Always",
        "ClientToken": "Always",
        "Tags": "Never",
    },
    "AWS::ElasticLoadBalancingV2::TargetGroup": {
        "Name": "Always",
        "VpcId": "Always",
        "Port": "Always",
        "Protocol": "Always",
        "TargetType": "Always",
        "Targets": "Never",
        "HealthCheckPath": "Never",
    },
    "AWS::ElasticLoadBalancingV2::Listener": {
        "LoadBalancerArn": "Always",
        "DefaultActions": "Never",
        "Port": "Never",
    },
    "AWS::ElasticLoadBalancingV2::ListenerRule": {
        "ListenerArn": "Always",
        "Conditions": "Never",
        "Actions": "Never",
        "Priority": "Never",
    },
    "AWS::ElasticLoadBalancingV2::LoadBalancer": {
        "Name": "Always",
        "Scheme": "Always",
        "Type": "Always",
        "Subnets": "Never",
        "SecurityGroups": "Never",
    },
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with in_process_sandbox() as server:
        yield server


@pytest.fixture(scope="module")
def stage1(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    toolchain.prepare_jsii()
    return synthesize_profile(tmp_path_factory.mktemp("stage-1"), "stage-1", "postgres", False)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """What `hivemind upgrade --to-production` applies: the same deployment, instance
    type and engine, as production."""
    toolchain.prepare_jsii()
    return synthesize_profile(
        tmp_path_factory.mktemp("production"), "production", "postgres", False
    )


@pytest.fixture(scope="module")
def aws(sandbox: SandboxServer) -> Iterator[Clients]:
    """Clients on the sandbox; afterwards no stack stays behind."""
    clients = Clients(sandbox.url)
    yield clients
    for summary in clients.cloudformation.list_stacks()["StackSummaries"]:
        if summary["StackStatus"] != "DELETE_COMPLETE":
            destroy(clients, summary["StackId"])


@pytest.fixture(scope="module")
def deployed(aws: Clients, stage1: Synthesized) -> str:
    """A stage-1 deployment's stack, which the tests here share (the upgrade last)."""
    stack_id = str(
        aws.cloudformation.create_stack(
            StackName=stage1.stack_name, TemplateBody=stage1.body, Parameters=KEY_PARAMETERS
        )["StackId"]
    )
    assert stack(aws, stack_id)["StackStatus"] == "CREATE_COMPLETE", failures(aws, stack_id)
    return stack_id


def failures(clients: Clients, stack_id: str) -> list[tuple[str, str]]:
    return [
        (e["LogicalResourceId"], e.get("ResourceStatusReason", ""))
        for e in events(clients, stack_id)
        if e["ResourceStatus"].endswith("_FAILED")
    ]


def parameters(token: str) -> list[dict[str, str]]:
    return [
        {"ParameterKey": "SshPublicKey", "ParameterValue": SSH_PUBLIC_KEY},
        {"ParameterKey": "StandbyToken", "ParameterValue": token},
    ]


def change_set(
    clients: Clients,
    stack_id: str,
    name: str,
    template: dict[str, Any] | str,
    given: list[dict[str, str]],
) -> dict[str, dict[str, Any]]:
    """Create an UPDATE change set with the parameters `given`; its resource changes by
    logical id."""
    body = template if isinstance(template, str) else json.dumps(template)
    clients.cloudformation.create_change_set(
        StackName=stack_id,
        ChangeSetName=name,
        ChangeSetType="UPDATE",
        TemplateBody=body,
        Parameters=given,
    )
    described = clients.cloudformation.describe_change_set(StackName=stack_id, ChangeSetName=name)
    assert described["Status"] == "CREATE_COMPLETE", described.get("StatusReason")
    changes = [c["ResourceChange"] for c in described["Changes"]]
    assert {c["Type"] for c in described["Changes"]} == {"Resource"}
    return {c["LogicalResourceId"]: c for c in changes}


def physical_ids(clients: Clients, stack_id: str) -> dict[str, str]:
    summaries = clients.cloudformation.list_stack_resources(StackName=stack_id)
    return {
        r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries["StackResourceSummaries"]
    }


def targets(change: dict[str, Any]) -> dict[str, str]:
    """What a modification changes: each property (or Tags, a policy) and whether its
    change recreates the resource."""
    return {
        d["Target"].get("Name", d["Target"]["Attribute"]): d["Target"]["RequiresRecreation"]
        for d in change["Details"]
    }


def connect(address: str, port: int | str, password: str) -> Any:
    return psycopg.connect(
        host=address,
        port=int(port),
        user="hivemind",
        password=password,
        dbname="app",
        connect_timeout=5,
        autocommit=True,
    )


def database_secret(clients: Clients, stack_id: str) -> dict[str, Any]:
    arn = outputs(clients, stack_id)["DatabaseSecretArn"]
    return dict(json.loads(clients.secretsmanager.get_secret_value(SecretId=arn)["SecretString"]))


def test_the_replacement_rules_are_the_documented_ones() -> None:
    found = {
        type_name: {
            name: provisioning.replacement_rules(type_name).recreation(name) for name in documented
        }
        for type_name, documented in DOCUMENTED.items()
    }
    assert found == DOCUMENTED


def test_conditional_database_changes_replace_as_rds_decides() -> None:
    postgres = {"Engine": "postgres", "MultiAZ": False, "BackupRetentionPeriod": 0}
    upgraded = {**postgres, "MultiAZ": True, "BackupRetentionPeriod": 7}
    assert not provisioning.replaces("AWS::RDS::DBInstance", postgres, upgraded)
    assert provisioning.replaces("AWS::RDS::DBInstance", postgres, {**postgres, "Engine": "mysql"})
    aurora = {"Engine": "aurora"}
    assert not provisioning.replaces("AWS::RDS::DBInstance", aurora, {"Engine": "aurora-mysql"})
    pinned = {**postgres, "AvailabilityZone": "eu-west-1a"}
    assert provisioning.replaces(
        "AWS::RDS::DBInstance", pinned, {**pinned, "AvailabilityZone": "eu-west-1b"}
    )
    # A Multi-AZ instance may leave its zone to RDS.
    assert not provisioning.replaces("AWS::RDS::DBInstance", pinned, upgraded)


def test_a_noecho_parameters_new_value_modifies_what_uses_it_in_place(
    aws: Clients, deployed: str, stage1: Synthesized
) -> None:
    before = physical_ids(aws, deployed)

    changes = change_set(aws, deployed, "new-token", stage1.body, parameters(NEW_TOKEN))

    assert list(changes) == [STANDBY_RULE]
    rule = changes[STANDBY_RULE]
    assert (rule["Action"], rule["Replacement"], rule["Scope"]) == (
        "Modify",
        "False",
        ["Properties"],
    )
    assert rule["PhysicalResourceId"] == before[STANDBY_RULE]
    target = {"Attribute": "Properties", "Name": "Conditions", "RequiresRecreation": "Never"}
    assert rule["Details"] == [
        {"Target": target, "Evaluation": "Dynamic", "ChangeSource": "DirectModification"},
        {
            "Target": target,
            "Evaluation": "Static",
            "ChangeSource": "ParameterReference",
            "CausingEntity": "StandbyToken",
        },
    ]

    aws.cloudformation.execute_change_set(StackName=deployed, ChangeSetName="new-token")

    assert stack(aws, deployed)["StackStatus"] == "UPDATE_COMPLETE", failures(aws, deployed)
    assert physical_ids(aws, deployed) == before
    rule_arn = before[STANDBY_RULE]
    (described,) = aws.elbv2.describe_rules(RuleArns=[rule_arn])["Rules"]
    assert described["Conditions"][0]["HttpHeaderConfig"]["Values"] == [NEW_TOKEN]


def test_a_new_subnet_group_name_replaces_the_database_and_a_new_engine_may(
    aws: Clients, deployed: str, stage1: Synthesized
) -> None:
    moved = copy.deepcopy(stage1.template)
    moved["Resources"][DATABASE]["Properties"]["DBSubnetGroupName"] = "another-subnet-group"
    database = change_set(aws, deployed, "moved", moved, parameters(NEW_TOKEN))[DATABASE]
    assert (database["Action"], database["Replacement"]) == ("Modify", "True")
    assert database["Details"] == [
        {
            "Target": {
                "Attribute": "Properties",
                "Name": "DBSubnetGroupName",
                "RequiresRecreation": "Always",
            },
            "Evaluation": "Static",
            "ChangeSource": "DirectModification",
        }
    ]

    # RDS changes some engines in place (aurora to aurora-mysql, Oracle editions), so a
    # change set says Conditional, as AWS's does; postgres to mysql is a new instance.
    other = copy.deepcopy(stage1.template)
    other["Resources"][DATABASE]["Properties"].update({"Engine": "mysql", "EngineVersion": "8.0"})
    database = change_set(aws, deployed, "engine", other, parameters(NEW_TOKEN))[DATABASE]
    assert (database["Action"], database["Replacement"]) == ("Modify", "Conditional")
    assert targets(database) == {"Engine": "Conditionally", "EngineVersion": "Never"}

    for name in ("moved", "engine"):
        aws.cloudformation.delete_change_set(StackName=deployed, ChangeSetName=name)
    assert stack(aws, deployed)["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE")


def test_the_upgrade_to_production_keeps_the_database_and_does_what_its_change_set_says(
    aws: Clients, deployed: str, stage1: Synthesized, production: Synthesized
) -> None:
    before = physical_ids(aws, deployed)
    secret = database_secret(aws, deployed)
    address = outputs(aws, deployed)["DatabaseEndpoint"]
    server = databases.server_of(before[DATABASE])
    assert server is not None
    with connect(address, 5432, secret["password"]) as connection:
        connection.execute("CREATE TABLE notes (body text)")
        connection.execute("INSERT INTO notes VALUES ('written in stage-1')")

    changes = change_set(aws, deployed, "upgrade", production.body, parameters(NEW_TOKEN))

    database = changes[DATABASE]
    # MultiAZ and BackupRetentionPeriod are properties CloudFormation replaces a DB
    # instance for only under conditions (RDS's handler modifies them in place): the
    # change set cannot promise False, and says Conditional, as AWS's does.
    assert (database["Action"], database["Replacement"]) == ("Modify", "Conditional")
    assert database["PhysicalResourceId"] == before[DATABASE]
    assert targets(database) == {
        "BackupRetentionPeriod": "Conditionally",
        "DeleteAutomatedBackups": "Never",
        "DeletionProtection": "Never",
        "MultiAZ": "Conditionally",
    }  # DeletionPolicy and UpdateReplacePolicy: Snapshot in both profiles, unchanged
    assert database["Scope"] == ["Properties"]
    assert {d["Evaluation"] for d in database["Details"]} == {"Static"}
    instance = changes[STAGE1_INSTANCE]  # what HiveMind avoids by keeping its subnet
    assert (instance["Replacement"], targets(instance)) == ("True", {"SubnetId": "Always"})
    added = {c["ResourceType"] for c in changes.values() if c["Action"] == "Add"}
    assert {
        "AWS::RDS::DBInstance",
        "AWS::EC2::NatGateway",
        "AWS::EC2::Subnet",
        "AWS::EC2::InstanceConnectEndpoint",
    } <= added
    assert changes[REPLICA]["ResourceType"] == "AWS::RDS::DBInstance"
    for change in changes.values():
        if change["Action"] == "Add":
            assert (change["Scope"], change["Details"]) == ([], [])
            assert "PhysicalResourceId" not in change and "Replacement" not in change
        else:
            assert change["Action"] == "Modify" and change["Details"]

    aws.cloudformation.execute_change_set(StackName=deployed, ChangeSetName="upgrade")

    assert stack(aws, deployed)["StackStatus"] == "UPDATE_COMPLETE", failures(aws, deployed)
    after = physical_ids(aws, deployed)
    # What the change set said is what happened: True replaced, False kept.
    for logical_id, change in changes.items():
        if change["Action"] == "Modify" and change["Replacement"] != "Conditional":
            replaced = after[logical_id] != before[logical_id]
            assert replaced == (change["Replacement"] == "True"), logical_id
    assert after[DATABASE] == before[DATABASE]
    assert databases.server_of(after[DATABASE]) is server and server.is_running()
    (described,) = aws.rds.describe_db_instances(DBInstanceIdentifier=after[DATABASE])[
        "DBInstances"
    ]
    assert (described["MultiAZ"], described["BackupRetentionPeriod"]) == (True, 7)
    assert described["DeletionProtection"] is True
    with connect(address, 5432, secret["password"]) as connection:
        assert connection.execute("SELECT body FROM notes").fetchall() == [("written in stage-1",)]
        connection.execute("INSERT INTO notes VALUES ('written in production')")

    # The read replica is a real replica of the database: it has its data and follows it.
    (copy_of,) = [
        d
        for d in aws.rds.describe_db_instances()["DBInstances"]
        if d.get("ReadReplicaSourceDBInstanceIdentifier")
    ]
    assert copy_of["DBInstanceIdentifier"] == after[REPLICA]
    assert copy_of["ReadReplicaSourceDBInstanceIdentifier"].endswith(after[DATABASE])
    assert outputs(aws, deployed)["DatabaseReplicaEndpoint"] == copy_of["Endpoint"]["Address"]
    endpoint = copy_of["Endpoint"]
    with connect(endpoint["Address"], endpoint["Port"], secret["password"]) as standby:
        deadline = time.monotonic() + 10
        while True:
            rows = standby.execute("SELECT body FROM notes ORDER BY body").fetchall()
            if len(rows) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert rows == [("written in production",), ("written in stage-1",)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            standby.execute("INSERT INTO notes VALUES ('refused')")

    nat = aws.ec2.describe_nat_gateways(Filter=[{"Name": "state", "Values": ["available"]}])[
        "NatGateways"
    ]
    assert len(nat) == 2
    endpoints = aws.ec2.describe_instance_connect_endpoints()["InstanceConnectEndpoints"]
    assert [e["InstanceConnectEndpointId"] for e in endpoints] == [
        outputs(aws, deployed)["ConnectEndpointId"]
    ]
    private = aws.ec2.describe_subnets(SubnetIds=[after["NetworkVpcprivateSubnet1Subnet9EC58498"]])
    (moved,) = aws.ec2.describe_instances(InstanceIds=[after[STAGE1_INSTANCE]])["Reservations"]
    assert moved["Instances"][0]["SubnetId"] == private["Subnets"][0]["SubnetId"]
    assert before[STAGE1_INSTANCE] not in {
        i["InstanceId"]
        for r in aws.ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    }


def test_a_new_subnet_group_replaces_the_database_with_a_new_server(
    aws: Clients, stage1: Synthesized
) -> None:
    template = database_part(stage1.template)
    stack_id = aws.cloudformation.create_stack(
        StackName="database", TemplateBody=json.dumps(template)
    )["StackId"]
    assert stack(aws, stack_id)["StackStatus"] == "CREATE_COMPLETE", failures(aws, stack_id)
    before = physical_ids(aws, stack_id)
    old_server = databases.server_of(before[DATABASE])
    assert old_server is not None

    moved = copy.deepcopy(template)
    group = copy.deepcopy(moved["Resources"][SUBNET_GROUP])
    moved["Resources"]["OtherSubnetGroup"] = group
    moved["Resources"][DATABASE]["Properties"]["DBSubnetGroupName"] = {"Ref": "OtherSubnetGroup"}
    changes = change_set(aws, stack_id, "moved", moved, [])
    assert changes["OtherSubnetGroup"]["Action"] == "Add"
    assert (changes[DATABASE]["Replacement"], targets(changes[DATABASE])) == (
        "True",
        {"DBSubnetGroupName": "Always"},
    )

    aws.cloudformation.execute_change_set(StackName=stack_id, ChangeSetName="moved")

    assert stack(aws, stack_id)["StackStatus"] == "UPDATE_COMPLETE", failures(aws, stack_id)
    after = physical_ids(aws, stack_id)
    assert after[DATABASE] != before[DATABASE]
    (described,) = aws.rds.describe_db_instances(DBInstanceIdentifier=after[DATABASE])[
        "DBInstances"
    ]
    assert described["DBSubnetGroup"]["DBSubnetGroupName"] == after["OtherSubnetGroup"]
    new_server = databases.server_of(after[DATABASE])
    assert new_server is not None and new_server is not old_server
    assert not old_server.is_running() and databases.server_of(before[DATABASE]) is None
    assert destroy(aws, stack_id) == "DELETE_COMPLETE"


def database_part(template: dict[str, Any]) -> dict[str, Any]:
    """The database of a HiveMind template with what it refers to (its subnet group, the
    VPC and subnets, its security group, its secret)."""
    resources = template["Resources"]
    graph = dependencies(resources)
    wanted, keep = [DATABASE], set[str]()
    while wanted:
        logical_id = wanted.pop()
        if logical_id not in keep:
            keep.add(logical_id)
            wanted += graph[logical_id]
    return {"Resources": copy.deepcopy({k: v for k, v in resources.items() if k in keep})}
