"""What HiveMind relies on from the libraries most likely to change under it, each test
named after its package and failing with that package's version in its message: moto
(the sandbox extends it), boto3/botocore (the operations the sandbox serves), aws-cdk-lib
(the cloud assembly the pinned CDK CLI must read), cdk-nag and cfn-lint (the gates).

A patch release that changes one of these behaviours fails here first, by name, in
`scripts/drift-check` (the suite on the newest allowed versions) before a user's fresh
install meets it."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from harness import make_spec
from sandbox_harness import in_process_sandbox

from hivemind import toolchain
from hivemind.sandbox import patching, server

REGION = "us-east-1"
TOO_LARGE = json.dumps({"Resources": {}, "Description": "x" * 52_000})
RULE = {
    "RuleName": "upstream-probe",
    "Priority": 100,
    "FixedRate": 0.1,
    "ReservoirSize": 1,
    "ServiceName": "*",
    "ServiceType": "*",
    "Host": "*",
    "HTTPMethod": "*",
    "URLPath": "*",
    "ResourceARN": "*",
    "Version": 1,
}

# One call per operation the sandbox serves: enough to reach its handler, which answers
# or refuses (a refusal from the handler is a call that reached it).
CALLS: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("cloudformation", "CreateStack"): lambda c: c.create_stack(
        StackName="probe", TemplateBody=TOO_LARGE
    ),
    ("cloudformation", "UpdateStack"): lambda c: c.update_stack(
        StackName="probe", TemplateBody=TOO_LARGE
    ),
    ("cloudformation", "CreateChangeSet"): lambda c: c.create_change_set(
        StackName="probe", ChangeSetName="probe", TemplateBody=TOO_LARGE
    ),
    ("cloudformation", "ValidateTemplate"): lambda c: c.validate_template(TemplateBody=TOO_LARGE),
    ("cloudformation", "DescribeChangeSet"): lambda c: c.describe_change_set(
        StackName="probe", ChangeSetName="probe"
    ),
    ("cloudformation", "DeleteChangeSet"): lambda c: c.delete_change_set(
        StackName="probe", ChangeSetName="probe"
    ),
    ("cloudformation", "ListChangeSets"): lambda c: c.list_change_sets(StackName="probe"),
    ("cloudformation", "ContinueUpdateRollback"): lambda c: c.continue_update_rollback(
        StackName="probe"
    ),
    ("cloudformation", "ListStackResources"): lambda c: c.list_stack_resources(StackName="probe"),
    ("cloudformation", "DeleteStack"): lambda c: c.delete_stack(StackName="probe"),
    ("cloudtrail", "LookupEvents"): lambda c: c.lookup_events(),
    ("ec2", "DescribeInstanceConnectEndpoints"): lambda c: c.describe_instance_connect_endpoints(),
    ("ec2", "CreateInstanceConnectEndpoint"): lambda c: c.create_instance_connect_endpoint(
        SubnetId="subnet-0123456789abcdef0"
    ),
    ("ec2", "DeleteInstanceConnectEndpoint"): lambda c: c.delete_instance_connect_endpoint(
        InstanceConnectEndpointId="eice-0123456789abcdef0"
    ),
    ("ec2", "GetConsoleOutput"): lambda c: c.get_console_output(InstanceId="i-0123456789abcdef0"),
    ("xray", "CreateGroup"): lambda c: c.create_group(
        GroupName="probe", FilterExpression='service("probe")'
    ),
    ("xray", "GetGroup"): lambda c: c.get_group(GroupName="probe"),
    ("xray", "GetGroups"): lambda c: c.get_groups(),
    ("xray", "UpdateGroup"): lambda c: c.update_group(
        GroupName="probe", FilterExpression='service("other")'
    ),
    ("xray", "DeleteGroup"): lambda c: c.delete_group(GroupName="probe"),
    ("xray", "CreateSamplingRule"): lambda c: c.create_sampling_rule(SamplingRule=RULE),
    ("xray", "GetSamplingRules"): lambda c: c.get_sampling_rules(),
    ("xray", "UpdateSamplingRule"): lambda c: c.update_sampling_rule(
        SamplingRuleUpdate={"RuleName": "upstream-probe", "FixedRate": 0.2}
    ),
    ("xray", "DeleteSamplingRule"): lambda c: c.delete_sampling_rule(RuleName="upstream-probe"),
}


def version(package: str) -> str:
    return f"{package} {importlib.metadata.version(package)}"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with in_process_sandbox() as running:
        yield running.url


def client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )


def test_moto_and_boto3_route_every_operation_the_sandbox_serves_to_it(endpoint: str) -> None:
    assert set(CALLS) == set(patching.SERVED), "each operation the sandbox serves has a call"
    unreached: dict[str, str] = {}
    for (service, operation), call in CALLS.items():
        before = patching.CALLS[(service, operation)]
        try:
            answer = f"answered {sorted(call(client(endpoint, service)))}"
        except ClientError as error:
            answer = f"refused: {error}"
        if patching.CALLS[(service, operation)] != before + 1:
            unreached[f"{service} {operation}"] = answer
    assert not unreached, (
        f"{version('moto')} with {version('botocore')} does not route these to the "
        f"sandbox's handlers (hivemind/sandbox/patching.py): {unreached}"
    )


def test_moto_answers_the_x_ray_group_api_as_the_sandbox_keeps_it(endpoint: str) -> None:
    xray = client(endpoint, "xray")
    xray.create_group(GroupName="kept", FilterExpression='service("kept")')
    names = [group["GroupName"] for group in xray.get_groups()["Groups"]]
    assert names[:1] == ["Default"] and "kept" in names, (
        f"{version('moto')}: X-Ray GetGroups answered {names}"
    )
    xray.delete_group(GroupName="kept")


def test_moto_has_every_attribute_the_sandbox_replaces() -> None:
    server.prepare()  # raises SandboxPatchError, naming moto's version, on a missing one
    assert patching.REPLACED, "the sandbox replaces parts of moto through patching.replace"
    stale = [
        f"{owner}.{name}"
        for owner, name, new in patching.REPLACED
        if inspect.getattr_static(owner, name) is not new  # a staticmethod as itself
    ]
    assert not stale, f"{version('moto')}: something replaced these again: {stale}"


def test_aws_cdk_lib_writes_an_assembly_the_pinned_cdk_cli_reads(tmp_path: Path) -> None:
    """The synthesized production stack passes the gates with no finding, and the pinned
    CDK CLI lists it: a newer aws-cdk-lib can write a cloud assembly schema the pinned CLI
    refuses ("This CDK CLI is not compatible with the CDK library used by your
    application"), and a newer cdk-nag or cfn-lint can find what it did not."""
    from hivemind.synth import synthesize

    result = synthesize(make_spec("production", "postgres", True), "shop-abcdefghij", tmp_path)
    libraries = f"{version('aws-cdk-lib')}, {version('cdk-nag')}, {version('cfn-lint')}"
    assert result.findings == [], f"{libraries}: the gates found {result.findings}"

    node = toolchain.find_node()
    assert node is not None
    listed = subprocess.run(
        toolchain.cdk_command(node, "ls", "--app", str(tmp_path / "cdk.out")),
        capture_output=True,
        text=True,
        env=toolchain.node_env(node),
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0 and result.stack_name in listed.stdout, (
        f"the CDK CLI {toolchain.CDK_CLI_VERSION} cannot read what {version('aws-cdk-lib')} "
        f"synthesized: {listed.stderr.strip()[-800:]}"
    )
